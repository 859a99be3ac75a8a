package password

import (
	"context"
	"fmt"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

var fast = Params{Memory: 8192, Time: 1, Threads: 1, SaltLen: 16, KeyLen: 32}

func TestHashVerify(t *testing.T) {
	ctx := context.Background()
	h := New(fast, 2)
	enc, err := h.Hash(ctx, "correct horse")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(enc, "$argon2id$v=19$m=8192,t=1,p=1$") {
		t.Fatalf("encoding %q", enc)
	}
	if ok, rehash, err := h.Verify(ctx, enc, "correct horse"); !ok || rehash || err != nil {
		t.Fatalf("Verify right = %v %v %v", ok, rehash, err)
	}
	if ok, _, err := h.Verify(ctx, enc, "correct horsE"); ok || err != nil {
		t.Fatalf("Verify wrong = %v %v", ok, err)
	}
	other, _ := h.Hash(ctx, "correct horse")
	if other == enc {
		t.Fatal("salt not random")
	}
	stronger := New(Params{Memory: 9216, Time: 1, Threads: 1, SaltLen: 16, KeyLen: 32}, 1)
	if ok, rehash, _ := stronger.Verify(ctx, enc, "correct horse"); !ok || !rehash {
		t.Fatalf("weaker hash: ok=%v rehash=%v", ok, rehash)
	}
}

func TestMalformed(t *testing.T) {
	h := New(fast, 1)
	for _, s := range []string{"", "plain", "$argon2i$v=19$m=1,t=1,p=1$AAAAAAAAAAA$AAAAAAAAAAAAAAAAAAAAAA",
		"$argon2id$v=19$m=99999999,t=1,p=1$AAAAAAAAAAA$AAAAAAAAAAAAAAAAAAAAAA", "$argon2id$v=19$m=8,t=1,p=1$!!$AAAA",
		"$argon2id$v=19$m=8,t=101,p=1$AAAAAAAAAAA$AAAAAAAAAAAAAAAAAAAAAA"} {
		if ok, _, err := h.Verify(context.Background(), s, "x"); ok || err == nil {
			t.Errorf("Verify(%q) = %v, %v", s, ok, err)
		}
	}
}

// TestBoundedConcurrency checks that no more than maxConcurrent hashes run
// at once: the others wait (and are not refused).
func TestBoundedConcurrency(t *testing.T) {
	h := New(fast, 2)
	var running, peak atomic.Int32
	var wg sync.WaitGroup
	for range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			b, err := h.acquire(context.Background())
			if err != nil {
				t.Error(err)
				return
			}
			n := running.Add(1)
			for {
				p := peak.Load()
				if n <= p || peak.CompareAndSwap(p, n) {
					break
				}
			}
			running.Add(-1)
			h.release(b)
		}()
	}
	wg.Wait()
	if peak.Load() > 2 {
		t.Fatalf("peak concurrency %d > 2", peak.Load())
	}
	// A waiting caller gives up when its context ends.
	<-h.slots
	<-h.slots
	ctx, cancel := context.WithTimeout(context.Background(), time.Millisecond)
	defer cancel()
	if _, err := h.Hash(ctx, "x"); err == nil {
		t.Fatal("Hash ran with every slot taken")
	}
}

// TestBuffers checks that the slots' memory is allocated once and reused,
// that what an earlier hash left in it does not change a result, and that a
// stored hash costlier than the configured one does not grow it.
func TestBuffers(t *testing.T) {
	ctx := context.Background()
	h := New(fast, 1)
	costly := New(Params{Memory: 2 * fast.Memory, Time: 1, Threads: 1, SaltLen: 16, KeyLen: 32}, 1)
	cheap := New(Params{Memory: 64, Time: 1, Threads: 1, SaltLen: 16, KeyLen: 32}, 1)
	var hashes []string
	for _, x := range []*Hasher{h, costly, cheap} {
		enc, err := x.Hash(ctx, "pw-"+fmt.Sprint(x.p.Memory))
		if err != nil {
			t.Fatal(err)
		}
		hashes = append(hashes, enc)
	}
	for range 2 { // in a buffer dirtied by the others, in every order
		for i, enc := range hashes {
			pw := "pw-" + fmt.Sprint([]uint32{fast.Memory, 2 * fast.Memory, 64}[i])
			if ok, _, err := h.Verify(ctx, enc, pw); !ok || err != nil {
				t.Fatalf("hash %d does not verify: %v, %v", i, ok, err)
			}
			if ok, _, _ := h.Verify(ctx, enc, pw+"x"); ok {
				t.Fatalf("hash %d verifies a wrong password", i)
			}
		}
	}
	b := <-h.slots
	defer func() { h.slots <- b }()
	if got, want := b.Size(), int(fast.Memory)*1024; got != want {
		t.Fatalf("the slot keeps %d bytes, want the configured %d", got, want)
	}
}

// BenchmarkVerify is one password check at the default (OWASP) cost.
func BenchmarkVerify(b *testing.B) {
	h := New(DefaultParams, 0)
	enc, err := h.Hash(b.Context(), "correct horse")
	if err != nil {
		b.Fatal(err)
	}
	for b.Loop() {
		if ok, _, err := h.Verify(b.Context(), enc, "correct horse"); err != nil || !ok {
			b.Fatal(ok, err)
		}
	}
}

func TestDefaultConcurrency(t *testing.T) {
	procs := runtime.GOMAXPROCS(0)
	for _, c := range []struct {
		memKiB uint32
		want   int
	}{
		{19456, min(procs, 3)}, // 64 MiB / 19 MiB
		{8192, min(procs, 8)},  // 64 MiB / 8 MiB
		{1 << 20, 1},           // 1 GiB: still one at a time
	} {
		p := DefaultParams
		p.Memory = c.memKiB
		if got := DefaultConcurrency(p); got != c.want {
			t.Errorf("m=%d KiB: %d hashes at once, want %d", c.memKiB, got, c.want)
		}
		if got := cap(New(p, 0).slots); got != c.want {
			t.Errorf("New(m=%d KiB, 0): bound %d, want %d", c.memKiB, got, c.want)
		}
	}
	if got := cap(New(DefaultParams, 7).slots); got != 7 {
		t.Errorf("explicit bound: %d, want 7", got)
	}
}
