// Copyright 2017 The Go Authors. All rights reserved.
// Use of this source code is governed by a BSD-style
// license that can be found in the LICENSE file.

package argon2

import (
	"bytes"
	"crypto/rand"
	"encoding/hex"
	mrand "math/rand/v2"
	"testing"

	xargon2 "golang.org/x/crypto/argon2"
)

// testVectors are x/crypto's Argon2id vectors (password "password", salt
// "somesalt").
var testVectors = []struct {
	time, memory uint32
	threads      uint8
	hash         string
}{
	{time: 1, memory: 64, threads: 1, hash: "655ad15eac652dc59f7170a7332bf49b8469be1fdb9c28bb"},
	{time: 2, memory: 64, threads: 1, hash: "068d62b26455936aa6ebe60060b0a65870dbfa3ddf8d41f7"},
	{time: 2, memory: 64, threads: 2, hash: "350ac37222f436ccb5c0972f1ebd3bf6b958bf2071841362"},
	{time: 3, memory: 256, threads: 2, hash: "4668d30ac4187e6878eedeacf0fd83c5a0a30db2cc16ef0b"},
	{time: 4, memory: 4096, threads: 4, hash: "145db9733a9f4ee43edf33c509be96b934d505a4efb33c5a"},
	{time: 4, memory: 1024, threads: 8, hash: "8dafa8e004f8ea96bf7c0f93eecf67a6047476143d15577f"},
	{time: 2, memory: 64, threads: 3, hash: "4a15b31aec7c2590b87d1f520be7d96f56658172deaa3079"},
	{time: 3, memory: 1024, threads: 6, hash: "1640b932f4b60e272f5d2207b9a9c626ffa1bd88d2349016"},
}

func TestVectors(t *testing.T) {
	run := func(t *testing.T) {
		var buf Buffer
		for i, v := range testVectors {
			want, _ := hex.DecodeString(v.hash)
			for _, b := range []*Buffer{nil, &buf, &buf} { // fresh, then reused
				got := IDKey(b, 1<<20, []byte("password"), []byte("somesalt"), v.time, v.memory, v.threads, uint32(len(want)))
				if !bytes.Equal(got, want) {
					t.Errorf("vector %d: got %x, want %x", i, got, want)
				}
			}
		}
	}
	if useSSE4 {
		t.Run("sse4", run)
		defer func(sse4 bool) { useSSE4 = sse4 }(useSSE4)
		useSSE4 = false
	}
	t.Run("generic", run)
}

// TestAgreesWithXCrypto derives keys with random inputs and costs in one
// buffer filled with garbage, larger and smaller than each hash needs, and
// compares them with x/crypto's: whatever the buffer held before must not
// change the result.
func TestAgreesWithXCrypto(t *testing.T) {
	r := mrand.New(mrand.NewPCG(1, 2))
	var buf Buffer
	for i := range 60 {
		pw, salt := make([]byte, r.IntN(40)), make([]byte, 8+r.IntN(24))
		rand.Read(pw)
		rand.Read(salt)
		time, memory, threads := uint32(1+r.IntN(3)), uint32(8+r.IntN(2048)), uint8(1+r.IntN(4))
		keyLen := uint32(16 + r.IntN(48))
		for j := range buf.b { // garbage from "an earlier password"
			for k := range buf.b[j] {
				buf.b[j][k] = r.Uint64()
			}
		}
		maxKiB := uint32(1 << 20)
		if i%5 == 4 {
			maxKiB = memory / 2 // too large for the buffer: memory of its own
		}
		before := buf.Size()
		got := IDKey(&buf, maxKiB, pw, salt, time, memory, threads, keyLen)
		want := xargon2.IDKey(pw, salt, time, memory, threads, keyLen)
		if !bytes.Equal(got, want) {
			t.Fatalf("t=%d m=%d p=%d: got %x, x/crypto %x", time, memory, threads, got, want)
		}
		if i%5 == 4 && buf.Size() != before {
			t.Fatalf("a hash over maxKiB grew the buffer from %d to %d bytes", before, buf.Size())
		}
		if i%5 != 4 && buf.Size() < int(memory)*1024/2 {
			t.Fatalf("buffer of %d bytes after a hash of %d KiB", buf.Size(), memory)
		}
	}
}

func BenchmarkIDKey(b *testing.B) {
	var buf Buffer
	for b.Loop() {
		IDKey(&buf, 1<<20, []byte("password"), []byte("somesaltsomesalt"), 2, 19456, 1, 32)
	}
}

// TestGenericBlock checks the portable block function, which other
// architectures use, against the one this machine uses.
func TestGenericBlock(t *testing.T) {
	r := mrand.New(mrand.NewPCG(3, 4))
	var in1, in2, out block
	for range 20 {
		for i := range in1 {
			in1[i], in2[i], out[i] = r.Uint64(), r.Uint64(), r.Uint64()
		}
		for _, xor := range []bool{false, true} {
			a, b := out, out
			processBlockGeneric(&a, &in1, &in2, xor)
			if xor {
				processBlockXOR(&b, &in1, &in2)
			} else {
				processBlock(&b, &in1, &in2)
			}
			if a != b {
				t.Fatalf("xor=%v: the generic block function disagrees", xor)
			}
		}
	}
}
