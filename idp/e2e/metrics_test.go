package e2e

import (
	"io"
	"net"
	"net/http"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/kamera-id/idp/idp/config"
	"github.com/kamera-id/idp/idp/testenv"
)

// metricValue is the value of the sample of name whose labels include
// every one given ("" and false when there is none).
func metricValue(body, name string, labels ...string) (float64, bool) {
	for _, line := range strings.Split(body, "\n") {
		if !strings.HasPrefix(line, name+"{") && !strings.HasPrefix(line, name+" ") {
			continue
		}
		i := strings.LastIndexByte(line, ' ')
		series := line[:i]
		match := true
		for j := 0; j+1 < len(labels); j += 2 {
			if !strings.Contains(series, labels[j]+`="`+labels[j+1]+`"`) {
				match = false
			}
		}
		if !match {
			continue
		}
		v, err := strconv.ParseFloat(line[i+1:], 64)
		return v, err == nil
	}
	return 0, false
}

// TestMetrics: after a login with TOTP, a failed code and a lockout, the
// metrics listener shows the counters moved and the latency histograms
// (by route pattern, never a raw path); the public listener does not serve
// them.
func TestMetrics(t *testing.T) {
	testenv.Each(t, func(t *testing.T, db testenv.Database) {
		p := startProvider(t, db, func(c *config.Config) { c.MetricsListen = "127.0.0.1:0" })
		h := p.app.MetricsHandler()
		if h == nil {
			t.Fatal("no metrics handler with IDP_METRICS_LISTEN set")
		}
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		srv := &http.Server{Handler: h, ReadHeaderTimeout: 5 * time.Second}
		go func() { _ = srv.Serve(ln) }()
		t.Cleanup(func() { _ = srv.Close() })
		scrape := func() string {
			t.Helper()
			resp, err := http.Get("http://" + ln.Addr().String() + "/metrics")
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			b, _ := io.ReadAll(resp.Body)
			if resp.StatusCode != http.StatusOK {
				t.Fatalf("scrape: %d %s", resp.StatusCode, b)
			}
			return string(b)
		}

		p.createUser(email, password)
		r := p.newRP("viewer", true)
		b := p.newBrowser()
		accountLogin(t, p, b, "")
		secret, _ := enroll(t, p, b)
		before := scrape()

		// A login: password, one wrong code, the right code, the token.
		b = p.newBrowser()
		a, pg := rpLogin(t, b, r)
		if res := b.submit(pg, "code", map[string]string{"code": wrongCode(totpCode(t, p, secret))}); res.Status != http.StatusOK || res.alert() == "" {
			t.Fatalf("wrong code: %d", res.Status)
		}
		r.mustExchange(a, b.submit(pg, "code", map[string]string{"code": totpCode(t, p, secret)}).code(t, a))
		// Then five wrong codes in another login: a lockout.
		b2 := p.newBrowser()
		_, pg2 := rpLogin(t, b2, r)
		for range 5 {
			b2.submit(pg2, "code", map[string]string{"code": wrongCode(totpCode(t, p, secret))})
		}
		after := scrape()

		delta := func(name string, labels ...string) float64 {
			v0, _ := metricValue(before, name, labels...)
			v1, ok := metricValue(after, name, labels...)
			if !ok {
				t.Errorf("no %s%v in the metrics", name, labels)
			}
			return v1 - v0
		}
		for _, c := range []struct {
			name   string
			labels []string
			want   float64
		}{
			{"idp_login_attempts_total", []string{"step", "password", "result", "success"}, 2},
			{"idp_login_attempts_total", []string{"step", "totp", "result", "failure"}, 6},
			{"idp_login_attempts_total", []string{"step", "totp", "result", "success"}, 1},
			{"idp_second_step_failures_total", []string{"method", "totp"}, 6},
			{"idp_lockouts_total", []string{"kind", "mfa"}, 1},
			{"idp_tokens_issued_total", []string{"grant", "authorization_code"}, 1},
			{"idp_http_request_duration_seconds_count", []string{"route", "POST /login/totp", "code", "200"}, 5},
			{"idp_http_request_duration_seconds_count", []string{"route", "POST /login/totp", "code", "303"}, 1},
			{"idp_http_request_duration_seconds_count", []string{"route", "POST /login/totp", "code", "429"}, 1},
			{"idp_http_request_duration_seconds_count", []string{"route", "POST /oauth2/token", "code", "200"}, 1},
			// One verification per password step.
			{"idp_password_hashes_total", nil, 2},
		} {
			if got := delta(c.name, c.labels...); got != c.want {
				t.Errorf("%s%v moved by %v, want %v", c.name, c.labels, got, c.want)
			}
		}
		// The hashes' CPU time is counted where the thread's clock is read.
		if got := delta("idp_password_hash_cpu_seconds_total"); runtime.GOOS == "linux" && got <= 0 {
			t.Errorf("idp_password_hash_cpu_seconds_total moved by %v over two hashes", got)
		}
		// The histograms exist, with buckets; store timings and pool use too.
		for _, name := range []string{
			`idp_http_request_duration_seconds_bucket{code="200",method="GET",route="GET /login",le="0.1"}`,
			`idp_store_operation_duration_seconds_bucket{op="StartSession",le="0.1"}`,
			`idp_store_operation_duration_seconds_count{op="RecordFailure"}`,
			"idp_store_pool_open_connections ", "idp_store_pool_max_open_connections ", "go_goroutines ",
		} {
			if !strings.Contains(after, name) {
				t.Errorf("metrics lack %s", name)
			}
		}
		// Routes are patterns: no raw path or query (flow ids) as a label.
		for _, line := range strings.Split(after, "\n") {
			if strings.Contains(line, "flow=") || strings.Contains(line, "route=\"/login/totp") {
				t.Errorf("a raw path in a label: %s", line)
			}
		}

		// The public listener does not serve them.
		resp, err := http.Get(p.URL + "/metrics")
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusNotFound || strings.Contains(string(body), "idp_") {
			t.Fatalf("public /metrics: %d\n%.300s", resp.StatusCode, body)
		}
	})
}
