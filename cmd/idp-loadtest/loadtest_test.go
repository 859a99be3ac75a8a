package main

import (
	"crypto/sha256"
	"fmt"
	"os"
	"strings"
	"syscall"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
)

// TestMain lets the test binary be the page server measureRequest starts
// (it runs the tool's own executable).
func TestMain(m *testing.M) {
	if len(os.Args) == 2 && os.Args[1] == pageServerArg {
		if err := servePages(); err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		return
	}
	os.Exit(m.Run())
}

func TestMeasureRequest(t *testing.T) {
	cpu, n, err := measureRequest(t.Context(), 200*time.Millisecond, 2)
	if err != nil {
		t.Fatal(err)
	}
	// Whatever the machine, answering a request costs the server
	// something, and less than the 10 s the client would wait.
	if n < 10 || cpu <= 0 || cpu > 10*time.Second {
		t.Errorf("%d requests at %v of server CPU each", n, cpu)
	}
}

func TestMetricsParsed(t *testing.T) {
	const text = `# HELP idp_store_operation_duration_seconds Store operation latency.
# TYPE idp_store_operation_duration_seconds histogram
idp_store_operation_duration_seconds_bucket{op="GetFlow",le="0.001"} 40
idp_store_operation_duration_seconds_bucket{op="GetFlow",le="+Inf"} 42
idp_store_operation_duration_seconds_sum{op="GetFlow"} 0.02
idp_store_operation_duration_seconds_count{op="GetFlow"} 42
idp_store_operation_duration_seconds_bucket{op="PutFlow",le="+Inf"} 15
idp_store_operation_duration_seconds_sum{op="PutFlow"} 0.01
idp_store_operation_duration_seconds_count{op="PutFlow"} 1.5e+01
# TYPE idp_store_operation_duration_seconds_other counter
idp_store_operation_duration_seconds_other 1000
# TYPE idp_password_hash_cpu_seconds_total counter
idp_password_hash_cpu_seconds_total 0.25
`
	fams, err := parseMetrics(strings.NewReader(text))
	if err != nil {
		t.Fatal(err)
	}
	if n, w, err := storeCallCounts(fams); err != nil || n != 57 || w != 15 {
		t.Errorf("storeCallCounts = %d calls, %d writes, %v; want 57 and 15 (PutFlow's)", n, w, err)
	}
	counter := map[string]*dto.MetricFamily{"idp_store_operation_duration_seconds": fams["idp_store_operation_duration_seconds_other"]}
	if _, _, err := storeCallCounts(counter); err == nil {
		t.Error("storeCallCounts took a counter for a histogram")
	}
	if v, err := counterValue(fams, "idp_password_hash_cpu_seconds_total"); err != nil || v != 0.25 {
		t.Errorf("counterValue = %v, %v; want 0.25", v, err)
	}
	for _, name := range []string{"idp_password_hashes_total", "idp_store_operation_duration_seconds"} {
		if _, err := counterValue(fams, name); err == nil {
			t.Errorf("counterValue found a counter %s", name)
		}
	}
}

func TestRequireLoopback(t *testing.T) {
	for _, u := range []string{"http://127.0.0.1:8080", "http://[::1]:8080", "http://localhost:8080", "http://127.0.0.2"} {
		if err := requireLoopback(u); err != nil {
			t.Errorf("%s refused: %v", u, err)
		}
	}
	for _, u := range []string{"http://10.0.0.1:8080", "https://example.com", "http://0.0.0.0:8080", "http://[::]:80", "http://localhost.example.com"} {
		if err := requireLoopback(u); err == nil {
			t.Errorf("%s allowed", u)
		}
	}
}

func TestPercentile(t *testing.T) {
	var xs []time.Duration
	for i := 100; i >= 1; i-- { // unsorted on purpose
		xs = append(xs, time.Duration(i)*time.Millisecond)
	}
	for _, c := range []struct {
		p    float64
		want time.Duration
	}{{.50, 50 * time.Millisecond}, {.95, 95 * time.Millisecond}, {.99, 99 * time.Millisecond}, {1, 100 * time.Millisecond}} {
		if got := percentile(xs, c.p); got != c.want {
			t.Errorf("p%v = %v, want %v", c.p*100, got, c.want)
		}
	}
	if xs[0] != 100*time.Millisecond {
		t.Error("percentile sorted its argument")
	}
	if percentile(nil, .5) != 0 {
		t.Error("percentile of nothing")
	}
}

// TestProcessCPU reads this process's CPU time both ways around 200ms of
// CPU (as getrusage counts it): both must agree with getrusage.
func TestProcessCPU(t *testing.T) {
	pid := os.Getpid()
	s0, err := schedCPU(pid)
	if err != nil {
		t.Skipf("no schedstat on this kernel: %v", err)
	}
	p0, err := procCPU(pid)
	if err != nil {
		t.Fatal(err)
	}
	r0 := selfCPU()
	sum := [32]byte{}
	for selfCPU()-r0 < 200*time.Millisecond {
		for range 1000 {
			sum = sha256.Sum256(sum[:])
		}
	}
	s1, _ := schedCPU(pid)
	p1, _ := procCPU(pid)
	r1 := selfCPU()
	ds, dp, dr := s1-s0, p1-p0, r1-r0
	// stat counts in 10ms ticks; schedstat in nanoseconds.
	if dp < dr-30*time.Millisecond || dp > dr+30*time.Millisecond {
		t.Errorf("stat: %v, getrusage: %v", dp, dr)
	}
	if ds < dr-10*time.Millisecond || ds > dr+10*time.Millisecond {
		t.Errorf("schedstat: %v, getrusage: %v", ds, dr)
	}
}

// TestProcessFaults: the page faults read from /proc/<pid>/stat are the
// kernel's count (getrusage's), and touching fresh memory moves them.
func TestProcessFaults(t *testing.T) {
	pid := os.Getpid()
	rusage := func() int64 {
		var ru syscall.Rusage
		if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
			t.Fatal(err)
		}
		return ru.Minflt + ru.Majflt
	}
	p0, err := procStat(pid, statMinflt, statMajflt)
	if err != nil {
		t.Fatal(err)
	}
	r0 := rusage()
	const pages = 4096 // 16 MiB, never touched before
	mem, err := syscall.Mmap(-1, 0, pages*4096, syscall.PROT_READ|syscall.PROT_WRITE, syscall.MAP_ANON|syscall.MAP_PRIVATE)
	if err != nil {
		t.Fatal(err)
	}
	defer syscall.Munmap(mem)
	for i := 0; i < len(mem); i += 4096 {
		mem[i] = 1
	}
	p1, err := procStat(pid, statMinflt, statMajflt)
	if err != nil {
		t.Fatal(err)
	}
	r1 := rusage()
	dp, dr := p1-p0, r1-r0
	if dp < pages/2 || dr < pages/2 || dp < dr*9/10 || dp > dr*11/10 {
		t.Errorf("faults while touching %d fresh pages: /proc/<pid>/stat %d, getrusage %d", pages, dp, dr)
	}
}

func TestCheckOptions(t *testing.T) {
	ok := options{logins: 10, steps: 10, concurrency: 2, refreshes: 10, exchanges: 10, burst: 4, timeout: time.Minute}
	if err := check(ok); err != nil {
		t.Fatalf("valid options refused: %v", err)
	}
	for name, o := range map[string]options{
		"no logins":     {logins: 0, steps: 1, concurrency: 2, exchanges: 1, burst: 1, timeout: time.Minute},
		"no steps":      {logins: 1, steps: 0, concurrency: 2, exchanges: 1, burst: 1, timeout: time.Minute},
		"huge burst":    {logins: 1, steps: 1, concurrency: 2, exchanges: 1, burst: 10000, timeout: time.Minute},
		"no exchanges":  {logins: 1, steps: 1, concurrency: 2, exchanges: 0, burst: 1, timeout: time.Minute},
		"endless":       {logins: 1, steps: 1, concurrency: 2, exchanges: 1, burst: 1, timeout: time.Hour},
		"too many conc": {logins: 1, steps: 1, concurrency: 1000, exchanges: 1, burst: 1, timeout: time.Minute},
	} {
		if err := check(o); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
}
