package metrics

import (
	"database/sql"
	"net/http"
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// Prometheus records into a registry of its own (so that two providers in
// one process, as in tests, do not collide) and serves it.
type Prometheus struct {
	reg       *prometheus.Registry
	logins    *prometheus.CounterVec
	mfaFails  *prometheus.CounterVec
	lockouts  *prometheus.CounterVec
	tokens    *prometheus.CounterVec
	requests  *prometheus.HistogramVec
	storeTime *prometheus.HistogramVec
	storeErrs *prometheus.CounterVec
	mail      *prometheus.CounterVec
}

var _ Recorder = (*Prometheus)(nil)

// NewPrometheus returns a recorder with the Go runtime and process
// collectors registered beside the provider's own metrics.
func NewPrometheus() *Prometheus {
	p := &Prometheus{reg: prometheus.NewRegistry()}
	p.logins = prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: "idp", Name: "login_attempts_total",
		Help: "Login step attempts by step (password, totp, backup) and result (success, failure, locked, disabled).",
	}, []string{"step", "result"})
	p.mfaFails = prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: "idp", Name: "second_step_failures_total",
		Help: "Wrong second-step codes (TOTP or backup code) entered at login, by method.",
	}, []string{"method"})
	p.lockouts = prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: "idp", Name: "lockouts_total",
		Help: "Lockouts triggered by repeated failures, by kind (mfa, account, ip, device).",
	}, []string{"kind"})
	p.tokens = prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: "idp", Name: "tokens_issued_total",
		Help: "Successful token endpoint responses by grant type.",
	}, []string{"grant"})
	p.requests = prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Namespace: "idp", Name: "http_request_duration_seconds",
		Help:    "HTTP request latency by route pattern, method and status code.",
		Buckets: []float64{.005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10},
	}, []string{"route", "method", "code"})
	p.storeTime = prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Namespace: "idp", Name: "store_operation_duration_seconds",
		Help:    "Store (database) operation latency by operation.",
		Buckets: []float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5},
	}, []string{"op"})
	p.storeErrs = prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: "idp", Name: "store_errors_total",
		Help: "Store operations that failed (not counting not-found and already-used answers), by operation.",
	}, []string{"op"})
	p.mail = prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: "idp", Name: "mail_attempts_total",
		Help: "Attempts to send a queued mail, by result (sent; failed: retried later; refused: not retried; expired: given up unsent).",
	}, []string{"result"})
	p.reg.MustRegister(p.logins, p.mfaFails, p.lockouts, p.tokens, p.requests, p.storeTime, p.storeErrs, p.mail,
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return p
}

// Login implements Recorder.
func (p *Prometheus) Login(step, result string) {
	p.logins.WithLabelValues(step, result).Inc()
	if step != StepPassword && result == ResultFailure {
		p.mfaFails.WithLabelValues(step).Inc()
	}
}

// Lockout implements Recorder.
func (p *Prometheus) Lockout(kind string) { p.lockouts.WithLabelValues(kind).Inc() }

// TokenIssued implements Recorder.
func (p *Prometheus) TokenIssued(grant string) { p.tokens.WithLabelValues(grant).Inc() }

// Request implements Recorder.
func (p *Prometheus) Request(route, method string, status int, d time.Duration) {
	p.requests.WithLabelValues(route, method, strconv.Itoa(status)).Observe(d.Seconds())
}

// StoreCall implements Recorder.
func (p *Prometheus) StoreCall(op string, d time.Duration, failed bool) {
	p.storeTime.WithLabelValues(op).Observe(d.Seconds())
	if failed {
		p.storeErrs.WithLabelValues(op).Inc()
	}
}

// MailAttempt implements Recorder.
func (p *Prometheus) MailAttempt(result string) { p.mail.WithLabelValues(result).Inc() }

// WatchPool publishes the connection pool's statistics (database/sql's,
// which both stores use) as idp_store_pool_* metrics.
func (p *Prometheus) WatchPool(stats func() sql.DBStats) {
	p.reg.MustRegister(&poolCollector{stats: stats})
}

// WatchHasher publishes the password hasher's count of hashes and the CPU
// time they took, as idp_password_hashes_total and
// idp_password_hash_cpu_seconds_total: what the hashes cost apart from the
// rest of the process's CPU time.
func (p *Prometheus) WatchHasher(stats func() (hashes int64, cpu time.Duration)) {
	p.reg.MustRegister(&hasherCollector{stats: stats})
}

var (
	hashCount = prometheus.NewDesc("idp_password_hashes_total", "Password hashes computed (argon2id, verifications included).", nil, nil)
	hashCPU   = prometheus.NewDesc("idp_password_hash_cpu_seconds_total", "CPU time of the password hashes, from the hashing threads' own clocks (Linux; 0 elsewhere).", nil, nil)
)

type hasherCollector struct {
	stats func() (int64, time.Duration)
}

func (c *hasherCollector) Describe(ch chan<- *prometheus.Desc) { ch <- hashCount; ch <- hashCPU }

func (c *hasherCollector) Collect(ch chan<- prometheus.Metric) {
	n, cpu := c.stats()
	ch <- prometheus.MustNewConstMetric(hashCount, prometheus.CounterValue, float64(n))
	ch <- prometheus.MustNewConstMetric(hashCPU, prometheus.CounterValue, cpu.Seconds())
}

// Handler serves the metrics in the Prometheus exposition format.
func (p *Prometheus) Handler() http.Handler {
	return promhttp.HandlerFor(p.reg, promhttp.HandlerOpts{Registry: p.reg})
}

var (
	poolMaxOpen = prometheus.NewDesc("idp_store_pool_max_open_connections", "Maximum open connections of the store's pool.", nil, nil)
	poolOpen    = prometheus.NewDesc("idp_store_pool_open_connections", "Open connections of the store's pool.", nil, nil)
	poolInUse   = prometheus.NewDesc("idp_store_pool_in_use_connections", "Connections in use.", nil, nil)
	poolIdle    = prometheus.NewDesc("idp_store_pool_idle_connections", "Idle connections.", nil, nil)
	poolWaits   = prometheus.NewDesc("idp_store_pool_wait_count_total", "Times a request waited for a connection.", nil, nil)
	poolWaited  = prometheus.NewDesc("idp_store_pool_wait_seconds_total", "Time spent waiting for a connection.", nil, nil)
	poolClosed  = prometheus.NewDesc("idp_store_pool_closed_total", "Connections closed, by reason (max_idle, max_idle_time, max_lifetime).", []string{"reason"}, nil)
)

// poolCollector reads the pool's statistics at scrape time.
type poolCollector struct{ stats func() sql.DBStats }

func (c *poolCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{poolMaxOpen, poolOpen, poolInUse, poolIdle, poolWaits, poolWaited, poolClosed} {
		ch <- d
	}
}

func (c *poolCollector) Collect(ch chan<- prometheus.Metric) {
	s := c.stats()
	ch <- prometheus.MustNewConstMetric(poolMaxOpen, prometheus.GaugeValue, float64(s.MaxOpenConnections))
	ch <- prometheus.MustNewConstMetric(poolOpen, prometheus.GaugeValue, float64(s.OpenConnections))
	ch <- prometheus.MustNewConstMetric(poolInUse, prometheus.GaugeValue, float64(s.InUse))
	ch <- prometheus.MustNewConstMetric(poolIdle, prometheus.GaugeValue, float64(s.Idle))
	ch <- prometheus.MustNewConstMetric(poolWaits, prometheus.CounterValue, float64(s.WaitCount))
	ch <- prometheus.MustNewConstMetric(poolWaited, prometheus.CounterValue, s.WaitDuration.Seconds())
	ch <- prometheus.MustNewConstMetric(poolClosed, prometheus.CounterValue, float64(s.MaxIdleClosed), "max_idle")
	ch <- prometheus.MustNewConstMetric(poolClosed, prometheus.CounterValue, float64(s.MaxIdleTimeClosed), "max_idle_time")
	ch <- prometheus.MustNewConstMetric(poolClosed, prometheus.CounterValue, float64(s.MaxLifetimeClosed), "max_lifetime")
}
