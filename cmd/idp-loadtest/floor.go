package main

import (
	"bufio"
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/kamera-id/idp/idp/app"
	"github.com/kamera-id/idp/idp/config"
	"github.com/kamera-id/idp/idp/store"
)

// The floor of a login on this machine: what its HTTP requests and its
// store calls cost at the least, with nothing of the provider's own work.
// A request is measured against a server that only answers a page of a
// login page's size (Go's net/http, as the provider's); a store call that
// reads is counted at the cheapest read there is, of a missing flow by its
// key, and one that writes at the cheapest write, a new flow stored (a
// one-row insert, committed), both through the provider's store code.
// With one signature for the ID token, that is a lower bound of the
// login's CPU: when it alone comes near the target, the target cannot hold
// on this machine with this many requests and calls.

// pageServerArg makes the tool a page server (the floor of a request).
const pageServerArg = "serve-pages-for-floor"

// page is about the size of the provider's login page (1.9 KB: net/http
// sends it whole, with its length, as it does the login page).
var page = []byte(strings.Repeat("<p>ログイン</p>\n", 95))

// servePages answers every request with page, on a loopback port it prints
// on stdout, until stdin closes.
func servePages() error {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return err
	}
	fmt.Println(ln.Addr())
	go func() {
		_, _ = io.Copy(io.Discard, os.Stdin)
		os.Exit(0)
	}()
	return http.Serve(ln, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if err := r.ParseForm(); err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		w.Header().Set("Cache-Control", "no-store")
		_, _ = w.Write(page)
	}))
}

// measureRequest starts the page server and sends it requests from c
// users at once for about d: the server's CPU per request.
func measureRequest(ctx context.Context, d time.Duration, c int) (time.Duration, int, error) {
	self, err := os.Executable()
	if err != nil {
		return 0, 0, err
	}
	cmd := exec.CommandContext(ctx, self, pageServerArg)
	stdin, err := cmd.StdinPipe()
	if err != nil {
		return 0, 0, err
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return 0, 0, err
	}
	if err := cmd.Start(); err != nil {
		return 0, 0, err
	}
	defer func() { stdin.Close(); _ = cmd.Wait() }()
	addr, err := bufio.NewReader(stdout).ReadString('\n')
	if err != nil {
		return 0, 0, fmt.Errorf("page server: %w", err)
	}
	url := "http://" + strings.TrimSpace(addr) + "/login?flow=" + rand.Text()
	if err := requireLoopback(url); err != nil {
		return 0, 0, err
	}
	tr := newTransport(c)
	defer tr.CloseIdleConnections()
	client := &http.Client{Transport: tr, Timeout: 10 * time.Second}
	get := func() error {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
		if err != nil {
			return err
		}
		_, _, body, err := send(client, req)
		if err == nil && len(body) != len(page) {
			err = errors.New("page server: short page")
		}
		return err
	}
	for range 2 * c { // warm up: connections
		if err := get(); err != nil {
			return 0, 0, err
		}
	}
	pid := cmd.Process.Pid
	c0, err := schedCPU(pid)
	if err != nil {
		return 0, 0, err
	}
	var (
		n    atomic.Int64
		wg   sync.WaitGroup
		fail atomic.Pointer[error]
		end  = time.Now().Add(d)
	)
	for range c {
		wg.Go(func() {
			for time.Now().Before(end) && fail.Load() == nil {
				if err := get(); err != nil {
					fail.Store(&err)
					return
				}
				n.Add(1)
			}
		})
	}
	wg.Wait()
	if p := fail.Load(); p != nil {
		return 0, 0, *p
	}
	c1, err := schedCPU(pid)
	if err != nil {
		return 0, 0, err
	}
	return (c1 - c0) / time.Duration(max(n.Load(), 1)), int(n.Load()), nil
}

// storeCallMeters are the cheapest read (a missing flow by its key) and
// the cheapest write (a new flow) through the provider's store code on the
// store at dbURL, each with a request's context (a deadline). The flows
// written expire at once; the provider's cleanup deletes them.
func storeCallMeters(ctx context.Context, cfg config.Config, dbURL string) (read, write *meter, err error) {
	scfg := cfg
	scfg.DatabaseURL = dbURL
	st, err := app.OpenStore(ctx, scfg, false)
	if err != nil {
		return nil, nil, err
	}
	call := func(f func(ctx context.Context) error) func() error {
		return func() error {
			rctx, cancel := context.WithTimeout(ctx, 10*time.Second)
			defer cancel()
			return f(rctx)
		}
	}
	missing := []byte(rand.Text())
	read = &meter{f: call(func(ctx context.Context) error {
		if _, err := st.GetFlow(ctx, missing, time.Now()); err == nil {
			return errors.New("a flow that should not exist")
		} else if !errors.Is(err, store.ErrNotFound) {
			return err
		}
		return nil
	})}
	data := []byte(`{"floor":true}`)
	write = &meter{f: call(func(ctx context.Context) error {
		now := time.Now()
		return st.PutFlow(ctx, &store.Flow{Key: []byte(rand.Text()), Data: data, CreatedAt: now, ExpiresAt: now})
	}), close: func() { st.Close() }}
	for _, m := range []*meter{read, write} {
		for range 20 { // warm up: connections, prepared statements
			if err := m.f(); err != nil {
				st.Close()
				return nil, nil, err
			}
		}
	}
	return read, write, nil
}

// concurrent calls m.f from c goroutines at once (as the provider's
// requests make their calls) for about d, with the collector stopped as in
// run, and returns the tool's CPU per call.
func (m *meter) concurrent(c int, d time.Duration) (time.Duration, error) {
	defer collectorStopped()()
	var failed atomic.Pointer[error]
	c0 := selfCPU()
	n, _ := parallel(c, d, func() error {
		err := m.f()
		if err != nil {
			failed.CompareAndSwap(nil, &err)
		}
		return err
	})
	cpu := selfCPU() - c0
	if p := failed.Load(); p != nil {
		return 0, *p
	}
	if n == 0 {
		return 0, errors.New("no call completed")
	}
	return cpu / time.Duration(n), nil
}

// scrape reads the provider's metrics.
func scrape(ctx context.Context, metricsURL string) (map[string]*dto.MetricFamily, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, metricsURL+"/metrics", nil)
	if err != nil {
		return nil, err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("metrics: status %d", resp.StatusCode)
	}
	return parseMetrics(resp.Body)
}

// parseMetrics parses a Prometheus text exposition.
func parseMetrics(r io.Reader) (map[string]*dto.MetricFamily, error) {
	p := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := p.TextToMetricFamilies(r)
	if err != nil {
		return nil, fmt.Errorf("metrics: %w", err)
	}
	return fams, nil
}

// counts are what the provider has counted so far, from its metrics: its
// store calls (the sample count of every operation's latency histogram)
// and how many of them write, and its password hashes and their CPU time.
type counts struct {
	storeCalls, storeWrites, hashes int64
	hashCPU                         time.Duration
}

// readCounts scrapes the provider's metrics listener once for its counts.
func readCounts(ctx context.Context, metricsURL string) (counts, error) {
	fams, err := scrape(ctx, metricsURL)
	if err != nil {
		return counts{}, err
	}
	calls, writes, err := storeCallCounts(fams)
	if err != nil {
		return counts{}, err
	}
	n, err := counterValue(fams, "idp_password_hashes_total")
	if err != nil {
		return counts{}, err
	}
	cpu, err := counterValue(fams, "idp_password_hash_cpu_seconds_total")
	if err != nil {
		return counts{}, err
	}
	return counts{storeCalls: calls, storeWrites: writes, hashes: int64(n), hashCPU: time.Duration(cpu * float64(time.Second))}, nil
}

func counterValue(fams map[string]*dto.MetricFamily, name string) (float64, error) {
	fam := fams[name]
	if fam == nil || fam.GetType() != dto.MetricType_COUNTER || len(fam.GetMetric()) != 1 {
		return 0, fmt.Errorf("metrics: no counter %s", name)
	}
	return fam.GetMetric()[0].GetCounter().GetValue(), nil
}

// storeCallCounts adds the sample counts of every operation's series of
// the store's latency histogram: all the calls, and those of operations
// that write (every one but those that only read: Get…, List…,
// CurrentSigningKeyID, LoginSession, Ping).
func storeCallCounts(fams map[string]*dto.MetricFamily) (calls, writes int64, err error) {
	const name = "idp_store_operation_duration_seconds"
	fam := fams[name]
	if fam == nil || fam.GetType() != dto.MetricType_HISTOGRAM {
		return 0, 0, fmt.Errorf("metrics: no histogram %s", name)
	}
	for _, m := range fam.GetMetric() {
		n := int64(m.GetHistogram().GetSampleCount())
		calls += n
		if !readOnlyOp(labelValue(m, "op")) {
			writes += n
		}
	}
	return calls, writes, nil
}

// readOnlyOp reports whether the store operation op only reads.
func readOnlyOp(op string) bool {
	return strings.HasPrefix(op, "Get") || strings.HasPrefix(op, "List") ||
		op == "CurrentSigningKeyID" || op == "LoginSession" || op == "Ping"
}

func labelValue(m *dto.Metric, name string) string {
	for _, l := range m.GetLabel() {
		if l.GetName() == name {
			return l.GetValue()
		}
	}
	return ""
}
