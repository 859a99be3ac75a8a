// Package password hashes account passwords with argon2id and bounds how
// many hashes run at once, so a burst of logins waits its turn instead of
// allocating memory without limit. Each of those slots keeps the memory of
// its hash for the next one (see internal/argon2).
package password

import (
	"context"
	"crypto/rand"
	"crypto/subtle"
	"encoding/base64"
	"errors"
	"fmt"
	"runtime"
	"strings"
	"sync/atomic"
	"time"

	"github.com/kamera-id/idp/idp/password/internal/argon2"
)

// Params are argon2id's cost parameters.
type Params struct {
	Memory  uint32 // KiB
	Time    uint32 // iterations
	Threads uint8
	SaltLen int
	KeyLen  uint32
}

// DefaultParams are OWASP's recommended minimum for argon2id:
// m=19 MiB, t=2, p=1.
var DefaultParams = Params{Memory: 19456, Time: 2, Threads: 1, SaltLen: 16, KeyLen: 32}

// ErrMalformed is returned for a stored hash that cannot be parsed.
var ErrMalformed = errors.New("password: malformed hash")

// Hasher hashes and verifies passwords, at most a fixed number at a time.
type Hasher struct {
	p Params
	// slots holds one buffer per hash that may run at once: a hash takes
	// one (or waits for one) and gives it back, so the hashes' memory is
	// allocated once, not at every login.
	slots chan *argon2.Buffer
	dummy string // a hash to verify against for unknown accounts
	// hashes counts the hashes computed; cpu is the CPU time they took, read
	// from the thread's own clock (Linux), so that what the hashes cost can
	// be told apart from the rest of the process's CPU time.
	hashes, cpu atomic.Int64
}

// MaxMemoryKiB is the most memory one hash may take, in KiB (4 GiB): a
// stored hash that asks for more is refused as malformed, and so is an
// IDP_ARGON2_MEMORY_KIB above it (idp/config), which also bounds the memory
// of the hashes that run at once by it.
const MaxMemoryKiB = 4 << 20

// MaxIterations is the most passes one hash may make: OWASP's and RFC
// 9106's choices make 1 to 5, and at 100 a hash at the least memory already
// takes about half a second. A stored hash that asks for more is refused as
// malformed (a tampered or imported row cannot tie up a hashing slot for
// minutes), and so is an IDP_ARGON2_ITERATIONS above it (idp/config).
const MaxIterations = 100

// MemoryBudget bounds the memory of the hashes that run at once when New is
// not given a bound: with OWASP's 19 MiB, three hashes.
const MemoryBudget = 64 << 20

// DefaultConcurrency is the bound New uses when given none: one hash per
// CPU, but no more than MemoryBudget allows (at least one), so a burst of
// logins costs the same memory on any machine.
func DefaultConcurrency(p Params) int {
	byMemory := int(MemoryBudget / (int64(max(p.Memory, 1)) * 1024))
	return max(1, min(runtime.GOMAXPROCS(0), byMemory))
}

// New returns a Hasher running at most maxConcurrent hashes at once
// (0: DefaultConcurrency).
func New(p Params, maxConcurrent int) *Hasher {
	if maxConcurrent <= 0 {
		maxConcurrent = DefaultConcurrency(p)
	}
	h := &Hasher{p: p, slots: make(chan *argon2.Buffer, maxConcurrent)}
	for range maxConcurrent {
		h.slots <- new(argon2.Buffer) // allocated by its first hash
	}
	h.dummy = h.encode(make([]byte, p.SaltLen), make([]byte, p.KeyLen), p)
	return h
}

// Concurrency is how many hashes run at once at most.
func (h *Hasher) Concurrency() int { return cap(h.slots) }

// Memory is the most memory the hashes running at once take, in bytes.
func (h *Hasher) Memory() int64 { return int64(h.Concurrency()) * int64(h.p.Memory) * 1024 }

// Params returns the parameters new hashes use.
func (h *Hasher) Params() Params { return h.p }

func (h *Hasher) acquire(ctx context.Context) (*argon2.Buffer, error) {
	select {
	case b := <-h.slots:
		return b, nil
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

func (h *Hasher) release(b *argon2.Buffer) { h.slots <- b }

// idKey hashes in a slot's buffer. A stored hash whose memory cost is above
// the configured one gets memory of its own, so the buffers stay the size
// Memory reports. The goroutine keeps its thread while hashing, so the
// thread's CPU clock measures the hash alone.
func (h *Hasher) idKey(b *argon2.Buffer, pw string, salt []byte, p Params, keyLen uint32) []byte {
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	t0, ok0 := threadCPU()
	key := argon2.IDKey(b, h.p.Memory, []byte(pw), salt, p.Time, p.Memory, p.Threads, keyLen)
	if t1, ok1 := threadCPU(); ok0 && ok1 {
		h.cpu.Add(int64(t1 - t0))
	}
	h.hashes.Add(1)
	return key
}

// Stats returns how many hashes this Hasher computed (verifications
// included) and the CPU time they took (zero where the thread's CPU clock
// cannot be read).
func (h *Hasher) Stats() (hashes int64, cpu time.Duration) {
	return h.hashes.Load(), time.Duration(h.cpu.Load())
}

// Hash returns a PHC-formatted argon2id hash of pw.
func (h *Hasher) Hash(ctx context.Context, pw string) (string, error) {
	salt := make([]byte, h.p.SaltLen)
	rand.Read(salt)
	b, err := h.acquire(ctx)
	if err != nil {
		return "", err
	}
	defer h.release(b)
	key := h.idKey(b, pw, salt, h.p, h.p.KeyLen)
	return h.encode(salt, key, h.p), nil
}

// Verify reports whether pw matches the stored hash, and whether the hash
// should be recomputed because its parameters are weaker than the current
// ones.
func (h *Hasher) Verify(ctx context.Context, encoded, pw string) (ok, rehash bool, err error) {
	p, salt, key, err := decode(encoded)
	if err != nil {
		return false, false, err
	}
	b, err := h.acquire(ctx)
	if err != nil {
		return false, false, err
	}
	defer h.release(b)
	got := h.idKey(b, pw, salt, p, uint32(len(key)))
	ok = subtle.ConstantTimeCompare(got, key) == 1
	rehash = p.Memory < h.p.Memory || p.Time < h.p.Time || len(key) < int(h.p.KeyLen)
	return ok, rehash, nil
}

// VerifyDummy spends the time of a verification on a fixed hash, so an
// unknown e-mail answers as slowly as a wrong password.
func (h *Hasher) VerifyDummy(ctx context.Context, pw string) {
	_, _, _ = h.Verify(ctx, h.dummy, pw)
}

func (h *Hasher) encode(salt, key []byte, p Params) string {
	b64 := base64.RawStdEncoding
	return fmt.Sprintf("$argon2id$v=%d$m=%d,t=%d,p=%d$%s$%s",
		argon2.Version, p.Memory, p.Time, p.Threads, b64.EncodeToString(salt), b64.EncodeToString(key))
}

func decode(s string) (p Params, salt, key []byte, err error) {
	parts := strings.Split(s, "$")
	if len(parts) != 6 || parts[1] != "argon2id" {
		return p, nil, nil, ErrMalformed
	}
	var v int
	if _, err := fmt.Sscanf(parts[2], "v=%d", &v); err != nil || v != argon2.Version {
		return p, nil, nil, ErrMalformed
	}
	if _, err := fmt.Sscanf(parts[3], "m=%d,t=%d,p=%d", &p.Memory, &p.Time, &p.Threads); err != nil ||
		p.Memory == 0 || p.Time == 0 || p.Threads == 0 || p.Memory > MaxMemoryKiB || p.Time > MaxIterations {
		return p, nil, nil, ErrMalformed
	}
	b64 := base64.RawStdEncoding
	if salt, err = b64.DecodeString(parts[4]); err != nil || len(salt) < 8 {
		return p, nil, nil, ErrMalformed
	}
	if key, err = b64.DecodeString(parts[5]); err != nil || len(key) < 16 {
		return p, nil, nil, ErrMalformed
	}
	return p, salt, key, nil
}
