package main

import (
	"bytes"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"time"

	"github.com/kamera-id/idp/idp/password"
)

// report is one run: the machine, its limits and each store's results.
type report struct {
	CPU       string
	Cores     int
	GoVersion string
	Alg       string
	Argon     password.Params
	ArgonMax  int
	Opts      options
	Lim       limits
	Stores    []*storeResult
	Skipped   []string
}

// Targets of the issue, as ratios of CPU times (so they hold on any machine).
const (
	maxExchangeSigs  = 2.0  // an exchange costs at most 2 signatures
	maxLoginHashFrac = 0.10 // a login, without its hash, costs at most 10% of a hash
	maxBurstRSSMiB   = 150.0
	minSecretBits    = 256
)

// loginCPU is the provider's CPU for one whole login with TOTP (authorize,
// password, TOTP, exchange, userinfo) without the argon2id hash: the sum of
// the step phases' CPU per login on the provider with the cheapest
// argon2id cost, less that cheap hash (as the provider counts it).
func (r *report) loginCPU(s *storeResult) time.Duration {
	return s.LoginStart.cpuPerOp() + s.LoginPassword.cpuPerOp() - s.CheapHashCPU +
		s.LoginTOTP.cpuPerOp() + s.LoginExchange.cpuPerOp() + s.LoginUserinfo.cpuPerOp()
}

// loginFloor is a lower bound of loginCPU on this machine: the login's
// requests at the page server's cost each, its store calls that read at
// the cheapest read's and those that write at the cheapest write's, and
// the ID token's signature; nothing of the provider's own work.
func (r *report) loginFloor(s *storeResult) time.Duration {
	sign, _ := r.refs(s)
	reads := s.LoginStoreCalls - s.LoginStoreWrites
	return time.Duration(s.LoginRequests*float64(r.Lim.RequestCPU)+reads*float64(s.StoreCallCPU)+
		s.LoginStoreWrites*float64(s.StoreWriteCPU)) + sign
}

type verdict struct {
	name, measured, target string
	ratio                  float64
	limit                  float64
	holds                  bool
}

// refs are the references a store's ratios divide by: one signature and
// one hash at the configured cost, as the tool measured them alongside the
// phases they are compared with (the calibration at the start when a phase
// did not run).
func (r *report) refs(s *storeResult) (sign, hash time.Duration) {
	sign, hash = s.RefSignCPU, s.RefHashCPU
	if sign == 0 {
		sign = r.Lim.SignCPU
	}
	if hash == 0 {
		hash = r.Lim.HashCPU
	}
	return sign, hash
}

func (r *report) verdicts(s *storeResult) []verdict {
	sign, hash := r.refs(s)
	ex := ms(s.Exchange.cpuPerOp()) / ms(sign)
	login := ms(r.loginCPU(s)) / ms(hash)
	rss := float64(s.BurstRSS) / 1024
	return []verdict{
		{
			name:     "exchange CPU / one " + r.Alg + " signature",
			measured: fmt.Sprintf("%.3f ms / %.3f ms", ms(s.Exchange.cpuPerOp()), ms(sign)),
			target:   fmt.Sprintf("<= %.1f", maxExchangeSigs), ratio: ex, limit: maxExchangeSigs, holds: ex <= maxExchangeSigs,
		},
		{
			name:     "login CPU without hash / one argon2id hash",
			measured: fmt.Sprintf("%.3f ms / %.2f ms", ms(r.loginCPU(s)), ms(hash)),
			target:   fmt.Sprintf("<= %.2f", maxLoginHashFrac), ratio: login, limit: maxLoginHashFrac, holds: login <= maxLoginHashFrac,
		},
		{
			name:     fmt.Sprintf("peak RSS, burst of %d logins (MiB)", s.Burst.Count+s.Burst.Errors),
			measured: fmt.Sprintf("%.1f MiB", rss),
			target:   fmt.Sprintf("<= %.0f MiB", maxBurstRSSMiB), ratio: rss / maxBurstRSSMiB, limit: 1, holds: rss <= maxBurstRSSMiB && s.Burst.Errors == 0,
		},
		{
			name:     "client secret entropy (bits), stored as " + s.ClientSecretHash,
			measured: fmt.Sprintf("%d bits", s.ClientSecretBits),
			target:   fmt.Sprintf(">= %d, not bcrypt", minSecretBits), ratio: float64(s.ClientSecretBits) / minSecretBits, limit: 1,
			holds: s.ClientSecretBits >= minSecretBits && s.ClientSecretHash != "bcrypt",
		},
	}
}

func holds(ok bool) string {
	if ok {
		return "HOLDS"
	}
	return "FAILS"
}

// printTargets prints the target table.
func (r *report) printTargets(w io.Writer) {
	fmt.Fprintf(w, "\nPerformance targets (%s, %d cores, %s; %s; argon2id m=%d KiB t=%d p=%d)\n",
		r.CPU, r.Cores, r.GoVersion, r.Alg, r.Argon.Memory, r.Argon.Time, r.Argon.Threads)
	fmt.Fprintf(w, "  machine: one %s signature %.3f ms CPU, %.0f signatures/s on all cores; one argon2id hash %.2f ms CPU, %.1f hashes/s on all cores;\n"+
		"    one loopback HTTP request %.1f us of CPU for a server that only answers a page (%d users at once)\n",
		r.Alg, ms(r.Lim.SignCPU), r.Lim.SignPerSec, ms(r.Lim.HashCPU), r.Lim.HashPerSec, us(r.Lim.RequestCPU), r.Opts.concurrency)
	for _, s := range r.Stores {
		fmt.Fprintf(w, "  %s: %.1f flows/s (%d users at once), %.1f exchanges/s, peak RSS %.1f MiB\n", s.Store, s.Flow.perSec(), r.Opts.concurrency, s.Exchange.perSec(), float64(s.PeakRSS)/1024)
		fmt.Fprintf(w, "    latency (ms)   ")
		steps := append(slices.Clone(loginSteps), stepSSOAuthz)
		for _, st := range steps {
			fmt.Fprintf(w, " %13s", st)
		}
		for _, q := range []struct {
			name string
			p    float64
		}{{"p50", .50}, {"p95", .95}, {"p99", .99}} {
			fmt.Fprintf(w, "\n    %-15s", q.name)
			for _, st := range steps {
				fmt.Fprintf(w, " %13.2f", ms(percentile(s.Latencies[st], q.p)))
			}
		}
		fmt.Fprintf(w, "\n    login CPU by step (provider with the cheapest hash, ms): authorize+page %.3f, password %.3f - hash %.3f, TOTP code %.3f, exchange %.3f, userinfo %.3f\n",
			ms(s.LoginStart.cpuPerOp()), ms(s.LoginPassword.cpuPerOp()), ms(s.CheapHashCPU), ms(s.LoginTOTP.cpuPerOp()),
			ms(s.LoginExchange.cpuPerOp()), ms(s.LoginUserinfo.cpuPerOp()))
		sign, hash := r.refs(s)
		fmt.Fprintf(w, "    measured by the tool alongside (the divisors below): one %s signature %.3f ms, one argon2id hash %.2f ms\n", r.Alg, ms(sign), ms(hash))
		floor := r.loginFloor(s)
		fmt.Fprintf(w, "    floor of that login here (a lower bound): %.1f requests x %.1f us + %.1f store reads x %.1f us + %.1f store writes x %.1f us\n"+
			"      + one signature %.3f ms = %.3f ms, %.3f of a hash (%.0f%% of the login target's limit); the provider's own work is the rest, %.3f ms\n",
			s.LoginRequests, us(r.Lim.RequestCPU), s.LoginStoreCalls-s.LoginStoreWrites, us(s.StoreCallCPU),
			s.LoginStoreWrites, us(s.StoreWriteCPU), ms(sign), ms(floor),
			ms(floor)/ms(hash), 100*ms(floor)/ms(hash)/maxLoginHashFrac, ms(r.loginCPU(s)-floor))
		fmt.Fprintf(w, "    %-58s %-26s %-16s %7s  %s\n", "target", "measured", "limit", "ratio", "")
		for _, v := range r.verdicts(s) {
			fmt.Fprintf(w, "    %-58s %-26s %-16s %7.3f  %s\n", v.name, v.measured, v.target, v.ratio, holds(v.holds))
		}
	}
	fmt.Fprintf(w, "  nothing per request that could be done once: reviewed, not measured (docs/performance.md)\n")
	for _, s := range r.Skipped {
		fmt.Fprintf(w, "  SKIPPED %s\n", s)
	}
}

func percentile(xs []time.Duration, p float64) time.Duration {
	if len(xs) == 0 {
		return 0
	}
	s := slices.Clone(xs)
	slices.Sort(s)
	i := int(p*float64(len(s))+0.5) - 1
	return s[min(max(i, 0), len(s)-1)]
}

// write saves the results: key: value lines (stable names, one figure a
// line) and the same figures in Go benchmark format for benchstat.
func (r *report) write(out, benchOut string) error {
	var b, bb bytes.Buffer
	kv := func(k string, format string, args ...any) {
		fmt.Fprintf(&b, "%s: %s\n", k, fmt.Sprintf(format, args...))
	}
	b.WriteString("# idp-loadtest results, format 1: one 'key: value' a line; times are milliseconds\n")
	kv("date", "%s", time.Now().UTC().Format(time.RFC3339))
	kv("machine.cpu", "%s", r.CPU)
	kv("machine.cores", "%d", r.Cores)
	kv("go.version", "%s", r.GoVersion)
	kv("config.signing_alg", "%s", r.Alg)
	kv("config.argon2id", "m=%d t=%d p=%d", r.Argon.Memory, r.Argon.Time, r.Argon.Threads)
	kv("load.logins", "%d", r.Opts.logins)
	kv("load.concurrency", "%d", r.Opts.concurrency)
	kv("load.refreshes", "%d", r.Opts.refreshes)
	kv("load.exchanges", "%d", r.Opts.exchanges)
	kv("load.burst", "%d", r.Opts.burst)
	kv("limits.signature.cpu_ms", "%.4f", ms(r.Lim.SignCPU))
	kv("limits.signature.per_s_all_cores", "%.1f", r.Lim.SignPerSec)
	kv("limits.argon2id.cpu_ms", "%.3f", ms(r.Lim.HashCPU))
	kv("limits.argon2id.cpu_ms_all_cores_busy", "%.3f", ms(r.Lim.HashCPUPar))
	kv("limits.argon2id.per_s_all_cores", "%.2f", r.Lim.HashPerSec)
	kv("limits.http_request.server_cpu_ms", "%.4f", ms(r.Lim.RequestCPU))
	bench := func(name string, n int, pairs ...any) {
		fmt.Fprintf(&bb, "Benchmark%s \t%d", name, max(n, 1))
		for i := 0; i+1 < len(pairs); i += 2 {
			fmt.Fprintf(&bb, "\t%.4g %s", pairs[i], pairs[i+1])
		}
		bb.WriteString("\n")
	}
	fmt.Fprintf(&bb, "goos: linux\ncpu: %s\npkg: github.com/kamera-id/idp/cmd/idp-loadtest\n", r.CPU)
	bench("Limits/alg="+r.Alg, r.Lim.SignSamples, ms(r.Lim.SignCPU), "sign-cpu-ms", r.Lim.SignPerSec, "signs/s")
	bench("Limits/argon2id", r.Lim.HashSamples, ms(r.Lim.HashCPU), "hash-cpu-ms", r.Lim.HashPerSec, "hashes/s")
	bench("Limits/http-request", r.Lim.RequestSamples, us(r.Lim.RequestCPU), "server-cpu-us")
	for _, s := range r.Stores {
		p := s.Store + "."
		kv(p+"flows_per_s", "%.2f", s.Flow.perSec())
		kv(p+"exchanges_per_s", "%.2f", s.Exchange.perSec())
		kv(p+"cheap_argon2id_cpu_ms", "%.4f", ms(s.CheapHashCPU))
		sign, hash := r.refs(s)
		kv(p+"alongside.signature.cpu_ms", "%.4f", ms(sign))
		kv(p+"alongside.argon2id.cpu_ms", "%.3f", ms(hash))
		for _, ph := range []phase{s.Flow, s.LoginStart, s.LoginPassword, s.LoginTOTP, s.LoginExchange, s.LoginUserinfo, s.Refresh, s.SSOAuthz, s.Exchange, s.Burst} {
			kv(p+"phase."+ph.Name+".count", "%d", ph.Count)
			kv(p+"phase."+ph.Name+".wall_s", "%.3f", ph.Wall.Seconds())
			kv(p+"phase."+ph.Name+".server_cpu_ms_per_op", "%.3f", ms(ph.cpuPerOp()))
			kv(p+"phase."+ph.Name+".page_faults_per_op", "%.2f", ph.faultsPerOp())
		}
		steps := append(slices.Clone(loginSteps), stepSSOAuthz)
		for _, st := range steps {
			lat := s.Latencies[st]
			for _, q := range []struct {
				name string
				p    float64
			}{{"p50", .50}, {"p95", .95}, {"p99", .99}} {
				kv(p+"latency."+st+"."+q.name+"_ms", "%.2f", ms(percentile(lat, q.p)))
			}
			bench(fmt.Sprintf("Load/store=%s/step=%s", s.Store, st), len(lat),
				ms(percentile(lat, .5)), "p50-ms", ms(percentile(lat, .95)), "p95-ms", ms(percentile(lat, .99)), "p99-ms")
		}
		kv(p+"server.cpu_per_exchange_ms", "%.3f", ms(s.Exchange.cpuPerOp()))
		kv(p+"server.cpu_per_refresh_ms", "%.3f", ms(s.Refresh.cpuPerOp()))
		kv(p+"server.cpu_per_flow_ms", "%.3f", ms(s.Flow.cpuPerOp()))
		kv(p+"server.cpu_per_login_without_hash_ms", "%.3f", ms(r.loginCPU(s)))
		kv(p+"login.requests", "%.2f", s.LoginRequests)
		kv(p+"login.store_calls", "%.2f", s.LoginStoreCalls)
		kv(p+"login.store_writes", "%.2f", s.LoginStoreWrites)
		kv(p+"store_call.cpu_ms", "%.4f", ms(s.StoreCallCPU))
		kv(p+"store_write.cpu_ms", "%.4f", ms(s.StoreWriteCPU))
		kv(p+"login.floor_ms", "%.3f", ms(r.loginFloor(s)))
		kv(p+"server.peak_rss_mib", "%.1f", float64(s.PeakRSS)/1024)
		kv(p+"server.peak_rss_burst_mib", "%.1f", float64(s.BurstRSS)/1024)
		kv(p+"client_secret_bits", "%d", s.ClientSecretBits)
		bench("Load/store="+s.Store+"/totals", s.Flow.Count,
			s.Flow.perSec(), "flows/s", s.Exchange.perSec(), "exchanges/s",
			ms(s.Exchange.cpuPerOp()), "exchange-cpu-ms", ms(r.loginCPU(s)), "login-cpu-ms", ms(r.loginFloor(s)), "login-floor-ms",
			float64(s.BurstRSS)/1024, "burst-rss-MiB")
		for i, v := range r.verdicts(s) {
			key := []string{"exchange_cpu_per_signature", "login_cpu_per_hash", "burst_peak_rss", "client_secret_bits"}[i]
			kv(p+"target."+key, "ratio=%.3f limit=%g %s", v.ratio, v.limit, holds(v.holds))
		}
	}
	for _, s := range r.Skipped {
		kv("skipped", "%s", s)
	}
	if err := mkdir(filepath.Dir(out)); err != nil {
		return err
	}
	if err := os.WriteFile(out, b.Bytes(), 0o644); err != nil {
		return err
	}
	if err := mkdir(filepath.Dir(benchOut)); err != nil {
		return err
	}
	return os.WriteFile(benchOut, bb.Bytes(), 0o644)
}

func mkdir(d string) error {
	if d == "" || d == "." {
		return nil
	}
	return os.MkdirAll(d, 0o755)
}
