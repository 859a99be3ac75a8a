package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/kamera-id/idp/idp/app"
	"github.com/kamera-id/idp/idp/crypt"
	"github.com/kamera-id/idp/idp/keys"
	"github.com/kamera-id/idp/idp/password"
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

// measureSigning signs with the provider's key manager (same algorithm,
// same key size, same library) for about d on one goroutine, then on every
// core.
func measureSigning(ctx context.Context, dir, alg string, d time.Duration) (cpu time.Duration, perSec float64, n int, err error) {
	st, err := sqlite.Open(ctx, filepath.Join(dir, "calib.db"))
	if err != nil {
		return 0, 0, 0, err
	}
	defer st.Close()
	if err := st.Migrate(ctx); err != nil {
		return 0, 0, 0, err
	}
	key, err := crypt.ParseKey(randomKey())
	if err != nil {
		return 0, 0, 0, err
	}
	m := keys.NewManager(keys.ManagerConfig{Store: st, Key: key, Algorithm: alg, KeepRetired: time.Hour, CacheTTL: time.Hour})
	if err := m.Ensure(ctx); err != nil {
		return 0, 0, 0, err
	}
	sign := func() error {
		_, err := m.Sign(ctx, idTokenPayload, map[string]any{"typ": "JWT"})
		return err
	}
	for range 10 { // warm up
		if err := sign(); err != nil {
			return 0, 0, 0, err
		}
	}
	runtime.GC()
	c0, start := selfCPU(), time.Now()
	for time.Since(start) < d {
		if err := sign(); err != nil {
			return 0, 0, 0, err
		}
		n++
	}
	cpu = (selfCPU() - c0) / time.Duration(n)
	total, wall := parallel(runtime.GOMAXPROCS(0), d, sign)
	return cpu, float64(total) / wall.Seconds(), n, nil
}

// measureHashing verifies a password hashed at p with the provider's
// hasher, one at a time for about d, then on every core at once.
func measureHashing(ctx context.Context, p password.Params, maxConcurrent int, d time.Duration) (cpu, cpuPar time.Duration, perSec float64, n int, err error) {
	h := password.New(p, maxConcurrent)
	// The garbage collector as the provider sets it (or as GOGC and
	// GOMEMLIMIT say, for both).
	app.TuneGC(os.Getenv, h.Memory())
	hash, err := h.Hash(ctx, "calibration-password")
	if err != nil {
		return 0, 0, 0, 0, err
	}
	verify := func() error {
		ok, _, err := h.Verify(ctx, hash, "calibration-password")
		if err == nil && !ok {
			err = fmt.Errorf("calibration hash does not verify")
		}
		return err
	}
	if err := verify(); err != nil {
		return 0, 0, 0, 0, err
	}
	runtime.GC()
	c0, start := selfCPU(), time.Now()
	for n < 3 || time.Since(start) < d {
		if err := verify(); err != nil {
			return 0, 0, 0, 0, err
		}
		n++
	}
	cpu = (selfCPU() - c0) / time.Duration(n)
	c0 = selfCPU()
	total, wall := parallel(runtime.GOMAXPROCS(0), d, verify)
	cpuPar = (selfCPU() - c0) / time.Duration(max(total, 1))
	return cpu, cpuPar, float64(total) / wall.Seconds(), n, nil
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
