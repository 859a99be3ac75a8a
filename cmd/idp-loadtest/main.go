// Command idp-loadtest measures the provider under load on this machine.
//
// It starts `idp serve` itself (a subprocess on a free loopback port, with a
// fresh embedded database, then a fresh PostgreSQL schema), seeds users with
// an enrolled authenticator and a client, and drives it with concurrent
// simulated users doing the whole flow: authorize, password, TOTP code,
// code exchange with PKCE, userinfo, refresh. It reads the provider's CPU
// time and peak memory from /proc, measures the machine's own limits (one
// signature, one argon2id hash) with the provider's code and configuration,
// and prints each performance target as a ratio of CPU times, so the
// verdicts hold on any machine. Every run is bounded in requests and time,
// and only loopback targets are driven.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"time"

	"github.com/kamera-id/idp/idp/config"
)

type options struct {
	idp         string
	stores      string
	pgURL       string
	logins      int
	steps       int
	concurrency int
	refreshes   int
	exchanges   int
	burst       int
	timeout     time.Duration
	out         string
	benchOut    string
	calibTime   time.Duration
	keep        bool
}

func main() {
	if len(os.Args) == 2 && os.Args[1] == pageServerArg {
		if err := servePages(); err != nil {
			fmt.Fprintln(os.Stderr, "idp-loadtest:", err)
			os.Exit(1)
		}
		return
	}
	var o options
	flag.StringVar(&o.idp, "idp", "bin/idp", "the idp binary to start")
	flag.StringVar(&o.stores, "stores", "sqlite,postgres", "stores to measure: sqlite, postgres or both")
	flag.StringVar(&o.pgURL, "pg", os.Getenv("IDP_TEST_DATABASE_URL"), "PostgreSQL URL (a fresh schema is created and dropped)")
	flag.IntVar(&o.logins, "logins", 150, "whole logins (authorize … refresh) in the flow phase, each with its own user")
	flag.IntVar(&o.steps, "steps", 600, "logins measured step by step (the login target), each with its own user")
	flag.IntVar(&o.concurrency, "c", 8, "concurrent simulated users")
	flag.IntVar(&o.refreshes, "refreshes", 300, "refreshes in the refresh phase")
	flag.IntVar(&o.exchanges, "exchanges", 600, "code exchanges in the exchange phase")
	flag.IntVar(&o.burst, "burst", 64, "concurrent logins in the burst phase (peak RSS)")
	flag.DurationVar(&o.timeout, "timeout", 8*time.Minute, "give up after this long")
	flag.DurationVar(&o.calibTime, "calib", 2*time.Second, "time for each calibration measurement")
	flag.BoolVar(&o.keep, "keep", false, "keep the temporary directory (databases, provider logs)")
	flag.StringVar(&o.out, "out", "artifacts/bench/results.txt", "results file (key: value lines)")
	flag.StringVar(&o.benchOut, "bench-out", "artifacts/bench/load.txt", "results in Go benchmark format (for benchstat)")
	flag.Parse()
	if flag.NArg() > 0 {
		fmt.Fprintln(os.Stderr, "idp-loadtest: unexpected argument", flag.Arg(0))
		os.Exit(2)
	}
	if err := run(o); err != nil {
		fmt.Fprintln(os.Stderr, "idp-loadtest:", err)
		os.Exit(1)
	}
}

func check(o options) error {
	switch {
	case o.logins < 1 || o.logins > 5000, o.steps < 1 || o.steps > 5000:
		return errors.New("-logins and -steps must be 1..5000")
	case o.concurrency < 1 || o.concurrency > 256:
		return errors.New("-c must be 1..256")
	case o.refreshes < 0 || o.refreshes > 20000, o.exchanges < 1 || o.exchanges > 20000:
		return errors.New("-refreshes and -exchanges must be at most 20000 (and -exchanges at least 1)")
	case o.burst < 1 || o.burst > 512:
		return errors.New("-burst must be 1..512")
	case o.timeout <= 0 || o.timeout > 30*time.Minute:
		return errors.New("-timeout must be at most 30m")
	}
	return nil
}

func run(o options) error {
	if err := check(o); err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(context.Background(), o.timeout)
	defer cancel()
	cfg, err := config.Load(os.Getenv("IDP_CONFIG"), os.Getenv)
	if err != nil {
		return err
	}
	bin, err := filepath.Abs(o.idp)
	if err != nil {
		return err
	}
	if _, err := os.Stat(bin); err != nil {
		return fmt.Errorf("%s: %w (run make build)", o.idp, err)
	}
	dir, err := os.MkdirTemp("", "idp-loadtest-")
	if err != nil {
		return err
	}
	if o.keep {
		defer logf("kept %s", dir)
	} else {
		defer os.RemoveAll(dir)
	}

	params := argonParams(cfg)
	r := &report{
		CPU: cpuModel(), Cores: runtime.NumCPU(), GoVersion: runtime.Version(),
		Alg: cfg.SigningAlg, Argon: params, ArgonMax: cfg.ArgonMaxConcurrent, Opts: o,
	}
	logf("machine: %s, %d cores, %s; signing %s; argon2id m=%d KiB t=%d p=%d",
		r.CPU, r.Cores, r.GoVersion, r.Alg, params.Memory, params.Time, params.Threads)

	logf("calibrating: %s signatures", cfg.SigningAlg)
	if r.Lim.SignCPU, r.Lim.SignPerSec, r.Lim.SignSamples, err = measureSigning(ctx, dir, cfg.SigningAlg, o.calibTime/2); err != nil {
		return fmt.Errorf("calibrate signing: %w", err)
	}
	logf("calibrating: argon2id hashes")
	if r.Lim.HashCPU, r.Lim.HashCPUPar, r.Lim.HashPerSec, r.Lim.HashSamples, err = measureHashing(ctx, params, cfg.ArgonMaxConcurrent, o.calibTime); err != nil {
		return fmt.Errorf("calibrate argon2id: %w", err)
	}
	logf("calibrating: loopback HTTP requests")
	if r.Lim.RequestCPU, r.Lim.RequestSamples, err = measureRequest(ctx, o.calibTime/2, o.concurrency); err != nil {
		return fmt.Errorf("calibrate requests: %w", err)
	}
	r.Lim.Cores = runtime.GOMAXPROCS(0)
	logf("  one signature %.3f ms CPU, %.0f/s on all cores; one argon2id hash %.1f ms CPU (%.1f ms with all cores hashing), %.1f/s on all cores; one request %.1f µs of a page server's CPU",
		ms(r.Lim.SignCPU), r.Lim.SignPerSec, ms(r.Lim.HashCPU), ms(r.Lim.HashCPUPar), r.Lim.HashPerSec, us(r.Lim.RequestCPU))

	for _, name := range strings.Split(o.stores, ",") {
		name = strings.TrimSpace(name)
		var res *storeResult
		switch name {
		case "sqlite":
			res, err = runSQLite(ctx, o, cfg, bin, dir)
		case "postgres":
			if o.pgURL == "" {
				err = errSkip("no PostgreSQL URL (-pg or IDP_TEST_DATABASE_URL)")
			} else {
				res, err = runPostgres(ctx, o, cfg, bin, dir)
			}
		default:
			return fmt.Errorf("unknown store %q", name)
		}
		var skip errSkip
		if errors.As(err, &skip) {
			logf("SKIP-POSTGRES: %s: %s", name, string(skip))
			r.Skipped = append(r.Skipped, name+": "+string(skip))
			continue
		}
		if err != nil {
			return fmt.Errorf("%s: %w", name, err)
		}
		r.Stores = append(r.Stores, res)
	}
	if err := r.write(o.out, o.benchOut); err != nil {
		return err
	}
	r.printTargets(os.Stdout)
	logf("results: %s (and %s for benchstat)", o.out, o.benchOut)
	return nil
}

type errSkip string

func (e errSkip) Error() string { return string(e) }

func logf(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "%s "+format+"\n", append([]any{time.Now().Format("15:04:05")}, args...)...)
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }
func us(d time.Duration) float64 { return float64(d) / float64(time.Microsecond) }

func cpuModel() string {
	b, err := os.ReadFile("/proc/cpuinfo")
	if err != nil {
		return "unknown"
	}
	for line := range strings.SplitSeq(string(b), "\n") {
		if k, v, ok := strings.Cut(line, ":"); ok && strings.TrimSpace(k) == "model name" {
			return strings.TrimSpace(v)
		}
	}
	return "unknown"
}

// newTransport is the HTTP transport every simulated user shares: kept-alive
// connections to the provider, as browsers and relying parties keep them.
func newTransport(conns int) *http.Transport {
	return &http.Transport{
		MaxIdleConns: conns * 2, MaxIdleConnsPerHost: conns * 2, IdleConnTimeout: time.Minute,
		DisableCompression: true,
	}
}

var _ = io.Discard
