package main

import (
	"context"
	"encoding/hex"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"runtime"
	"runtime/debug"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/kamera-id/idp/idp/app"
	"github.com/kamera-id/idp/idp/crypt"
	"github.com/kamera-id/idp/idp/keys"
	"github.com/kamera-id/idp/idp/password"
	"github.com/kamera-id/idp/idp/store"
	"github.com/kamera-id/idp/idp/store/sqlite"
)

// limits are the machine's own limits, measured by the tool with the
// provider's code and configuration, while the provider is not running.
type limits struct {
	SignCPU     time.Duration // CPU time of one signature, one core
	SignPerSec  float64       // signatures per second, all cores
	HashCPU     time.Duration // CPU time of one argon2id verification, one at a time
	HashCPUPar  time.Duration // the same, with every core hashing at once
	HashPerSec  float64       // verifications per second, all cores
	Cores       int
	SignSamples int
	HashSamples int
	// RequestCPU is a server's CPU for one loopback HTTP request that only
	// answers a page (the floor of a request).
	RequestCPU     time.Duration
	RequestSamples int
}

// selfCPU is this process's CPU time (user + system, all threads).
func selfCPU() time.Duration {
	var ru syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// idTokenPayload is about the size of the provider's ID tokens.
var idTokenPayload = []byte(`{"amr":["pwd","otp"],"at_hash":"KJ8uY0dAZg0JvR2J2UeL4w","aud":["loadtest"],` +
	`"auth_time":1767225600,"email":"load0001@example.test","email_verified":false,"exp":1767229200,` +
	`"iat":1767225600,"iss":"http://127.0.0.1:8080","jti":"8d0c2f6e-1b7a-4d55-9a43-0c8f3b1e2d77",` +
	`"locale":"ja","name":"Load Test","nonce":"x2b9r8DXYuQ3zE0nH1Qm5w","rat":1767225600,` +
	`"sid":"qL3mH9sTn2Yv8cXw","sub":"Zk3pQ8mVtR2wYx7nB4cD1e"}`)

// meter is a reference the tool measures with the provider's code: one
// signature, or one argon2id verification at a given cost. Its CPU time is
// summed over every call, so that it can be measured in slices spread over
// the same minutes as the provider's work it is compared with: on a shared
// or virtual machine the speed of a core drifts by tens of percent within a
// minute (other tenants, frequency scaling), and a reference measured once
// at the start would put that drift into every ratio.
type meter struct {
	f     func() error
	n     int
	cpu   time.Duration
	close func()
	// tune sets the garbage collector as the provider would for f, for
	// measuring it on every core at once (parallel).
	tune func()
}

// run calls f k times and adds their CPU time (this process's, all threads:
// the tool does nothing else meanwhile). The garbage collector runs before
// and not during: the tool's own heap (the simulated users) is larger than
// the provider's, and collecting it while hashing made one cheap hash cost
// the tool 1.5 ms more than it cost the provider. So a reference is the CPU
// of the operation itself; a collection its garbage causes in the provider
// is counted there, against the provider.
func (m *meter) run(k int) error {
	defer collectorStopped()()
	c0 := selfCPU()
	for range k {
		if err := m.f(); err != nil {
			return err
		}
	}
	m.cpu += selfCPU() - c0
	m.n += k
	return nil
}

// collectorStopped collects garbage, then stops the collector until the
// function it returns is called.
func collectorStopped() (restart func()) {
	runtime.GC()
	pct, limit := debug.SetGCPercent(-1), debug.SetMemoryLimit(math.MaxInt64)
	return func() { debug.SetGCPercent(pct); debug.SetMemoryLimit(limit) }
}

// per is the mean CPU time of one call.
func (m *meter) per() time.Duration {
	if m.n == 0 {
		return 0
	}
	return m.cpu / time.Duration(m.n)
}

// signMeter signs with the provider's key manager: same algorithm, same key
// size, same library. close releases its store.
func signMeter(ctx context.Context, dir, alg string) (*meter, error) {
	st, err := sqlite.Open(ctx, filepath.Join(dir, "calib-"+hex.EncodeToString(randBytes(4))+".db"))
	if err != nil {
		return nil, err
	}
	fail := func(err error) (*meter, error) { st.Close(); return nil, err }
	if err := st.Migrate(ctx); err != nil {
		return fail(err)
	}
	key, err := crypt.ParseKey(randomKey())
	if err != nil {
		return fail(err)
	}
	km := keys.NewManager(keys.ManagerConfig{Store: st, Key: key, Algorithm: alg, KeepRetired: time.Hour, CacheTTL: time.Hour})
	if err := km.Ensure(ctx); err != nil {
		return fail(err)
	}
	// The signature alone: the provider's check of the current key before
	// it (a store read, counted with the store's calls) answered without
	// the store.
	kid, err := km.Current(ctx)
	if err != nil {
		return fail(err)
	}
	km = keys.NewManager(keys.ManagerConfig{Store: currentKey{st, kid}, Key: key, Algorithm: alg, KeepRetired: time.Hour, CacheTTL: time.Hour})
	if err := km.Ensure(ctx); err != nil {
		return fail(err)
	}
	m := &meter{f: func() error {
		_, err := km.Sign(ctx, idTokenPayload, map[string]any{"typ": "JWT"})
		return err
	}, close: func() { st.Close() }}
	for range 10 { // warm up
		if err := m.f(); err != nil {
			return fail(err)
		}
	}
	return m, nil
}

// currentKey is a store whose current signing key is known without a read.
type currentKey struct {
	store.Store
	id string
}

func (s currentKey) CurrentSigningKeyID(context.Context) (string, error) { return s.id, nil }

// hashMeter verifies a password hashed at p with the provider's hasher;
// tune sets the garbage collector the provider would use at that cost (or
// GOGC and GOMEMLIMIT, for both).
func hashMeter(ctx context.Context, p password.Params, maxConcurrent int) (*meter, error) {
	h := password.New(p, maxConcurrent)
	hash, err := h.Hash(ctx, "calibration-password")
	if err != nil {
		return nil, err
	}
	m := &meter{f: func() error {
		ok, _, err := h.Verify(ctx, hash, "calibration-password")
		if err == nil && !ok {
			err = fmt.Errorf("calibration hash does not verify")
		}
		return err
	}, tune: func() {
		app.TuneGC(os.Getenv, h.Memory())
	}, close: func() {}}
	return m, m.f()
}

// measureSigning: the CPU of one signature (one goroutine, about d), then
// signatures per second on every core.
func measureSigning(ctx context.Context, dir, alg string, d time.Duration) (cpu time.Duration, perSec float64, n int, err error) {
	m, err := signMeter(ctx, dir, alg)
	if err != nil {
		return 0, 0, 0, err
	}
	defer m.close()
	runtime.GC()
	if err := m.until(d, 1); err != nil {
		return 0, 0, 0, err
	}
	total, wall := parallel(runtime.GOMAXPROCS(0), d, m.f)
	return m.per(), float64(total) / wall.Seconds(), m.n, nil
}

// measureHashing: the CPU of one argon2id verification at p, one at a time
// for about d, then with every core hashing at once.
func measureHashing(ctx context.Context, p password.Params, maxConcurrent int, d time.Duration) (cpu, cpuPar time.Duration, perSec float64, n int, err error) {
	m, err := hashMeter(ctx, p, maxConcurrent)
	if err != nil {
		return 0, 0, 0, 0, err
	}
	if err := m.until(d, 3); err != nil {
		return 0, 0, 0, 0, err
	}
	m.tune()
	c0 := selfCPU()
	total, wall := parallel(runtime.GOMAXPROCS(0), d, m.f)
	cpuPar = (selfCPU() - c0) / time.Duration(max(total, 1))
	return m.per(), cpuPar, float64(total) / wall.Seconds(), m.n, nil
}

// until runs the meter for about d, and at least least times.
func (m *meter) until(d time.Duration, least int) error {
	for start := time.Now(); m.n < least || time.Since(start) < d; {
		if err := m.run(1); err != nil {
			return err
		}
	}
	return nil
}

// parallel runs f on workers goroutines for about d and returns how many
// calls completed and the wall time they took.
func parallel(workers int, d time.Duration, f func() error) (int, time.Duration) {
	var (
		total atomic.Int64
		wg    sync.WaitGroup
	)
	start := time.Now()
	deadline := start.Add(d)
	for range workers {
		wg.Go(func() {
			for time.Now().Before(deadline) {
				if f() != nil {
					return
				}
				total.Add(1)
			}
		})
	}
	wg.Wait()
	return int(total.Load()), time.Since(start)
}
