package main

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/url"
	"path/filepath"
	"strconv"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/kamera-id/idp/idp/app"
	"github.com/kamera-id/idp/idp/config"
	"github.com/kamera-id/idp/idp/crypt"
	"github.com/kamera-id/idp/idp/mfa"
	"github.com/kamera-id/idp/idp/password"
	"github.com/kamera-id/idp/idp/store"
)

// phase is what one phase of the run measured.
type phase struct {
	Name   string
	Count  int           // operations completed
	Wall   time.Duration // wall time
	CPU    time.Duration // the provider's CPU time
	Faults int64         // the provider's page faults
	Errors int
}

func (p *phase) add(q phase) {
	p.Name = q.Name
	p.Count += q.Count
	p.Wall += q.Wall
	p.CPU += q.CPU
	p.Faults += q.Faults
	p.Errors += q.Errors
}

func (p phase) perSec() float64 { return float64(p.Count) / p.Wall.Seconds() }
func (p phase) cpuPerOp() time.Duration {
	if p.Count == 0 {
		return 0
	}
	return p.CPU / time.Duration(p.Count)
}

func (p phase) faultsPerOp() float64 {
	if p.Count == 0 {
		return 0
	}
	return float64(p.Faults) / float64(p.Count)
}

// storeResult is everything measured against one store.
type storeResult struct {
	Store string
	Flow  phase // whole logins with refresh
	// A login measured step by step on a provider with the cheapest
	// argon2id cost: authorize and login page, password, TOTP page and
	// code, exchange, userinfo.
	LoginStart, LoginPassword, LoginTOTP, LoginExchange, LoginUserinfo phase
	// CheapHashCPU is the CPU of the argon2id verifications at that cost
	// per password step, counted by the provider's hashing threads' own
	// clocks; RefHashCPU one hash at the configured cost, measured by the
	// tool between the slices of the steps.
	CheapHashCPU, RefHashCPU time.Duration
	// RefSignCPU is the CPU of one signature, measured by the tool between
	// the slices of the exchange phase.
	RefSignCPU time.Duration
	// The floor of the login measured step by step: its HTTP requests,
	// store calls and the calls of those that write per login (the calls
	// from the provider's metrics), and the CPU of the cheapest store call
	// that reads and of the cheapest that writes, measured by the tool
	// after the steps.
	LoginRequests, LoginStoreCalls, LoginStoreWrites float64
	StoreCallCPU, StoreWriteCPU                      time.Duration
	Refresh                                          phase
	SSOAuthz                                         phase
	Exchange                                         phase
	Burst                                            phase
	PeakRSS                                          int64 // KiB, the whole run up to the burst
	BurstRSS                                         int64 // KiB, peak during the burst
	Latencies                                        map[string][]time.Duration
	// ClientSecretBits is the entropy of the secret the provider issued;
	// ClientSecretHash describes how it is stored.
	ClientSecretBits int
	ClientSecretHash string
}

const seedPassword = "load-test-password-1"

// seeded is what the tool prepared in the store before starting the provider.
type seeded struct {
	clientID, secret string
	accounts         []*account
	secretBits       int
	secretHash       string
}

// seed creates the client and the accounts (each with a confirmed
// authenticator) through the provider's own code, with the configuration the
// provider will run with. Every account has the same password, hashed once.
func seed(ctx context.Context, cfg config.Config, n int) (*seeded, error) {
	a, err := app.Open(ctx, cfg, app.Options{Migrate: true, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		return nil, err
	}
	defer a.Close()
	c, secret, err := a.CreateClient(ctx, app.NewClient{
		ID: "loadtest", Name: "Load test", RedirectURIs: []string{"http://127.0.0.1/callback"}, FirstParty: true,
	})
	if err != nil {
		return nil, err
	}
	raw, err := base64.RawURLEncoding.DecodeString(secret)
	if err != nil {
		return nil, fmt.Errorf("client secret is not base64url: %w", err)
	}
	s := &seeded{clientID: c.ID, secret: secret, secretBits: 8 * len(raw)}
	s.secretHash = fmt.Sprintf("%d-byte keyed hash", len(c.SecretHash))
	if len(c.SecretHash) > 3 && string(c.SecretHash[:2]) == "$2" {
		s.secretHash = "bcrypt"
	}
	hash, err := a.Hasher.Hash(ctx, seedPassword)
	if err != nil {
		return nil, err
	}
	now := time.Now().Truncate(time.Second)
	run := hex.EncodeToString(randBytes(4))
	for i := range n {
		u := &store.User{
			ID: crypt.RandomToken(16), Email: fmt.Sprintf("load%05d-%s@example.test", i, run), Name: "Load Test",
			Locale: "ja", PasswordHash: hash, CreatedAt: now, UpdatedAt: now,
		}
		if err := a.Store.CreateUser(ctx, u); err != nil {
			return nil, err
		}
		totp, err := mfa.NewSecret()
		if err != nil {
			return nil, err
		}
		secretEnc := mfa.SealSecret(a.Key, u.ID, totp)
		if err := a.Store.PutPendingTOTP(ctx, &store.PendingTOTP{
			UserID: u.ID, SecretEnc: secretEnc, CreatedAt: now, ExpiresAt: now.Add(time.Hour),
		}); err != nil {
			return nil, err
		}
		codes, err := mfa.GenerateBackupCodes(mfa.BackupCodeCount)
		if err != nil {
			return nil, err
		}
		if err := a.Store.ConfirmTOTP(ctx, u.ID, secretEnc, 0, mfa.SealBackupCodes(a.Key, u.ID, codes), now); err != nil {
			return nil, err
		}
		s.accounts = append(s.accounts, &account{Email: u.Email, Password: seedPassword, Secret: totp})
	}
	return s, nil
}

func argonParams(cfg config.Config) password.Params {
	return password.Params{
		Memory: cfg.ArgonMemoryKiB, Time: cfg.ArgonIterations, Threads: password.DefaultParams.Threads,
		SaltLen: password.DefaultParams.SaltLen, KeyLen: password.DefaultParams.KeyLen,
	}
}

func randBytes(n int) []byte {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return b
}

// storeEnv is the provider's configuration for a run: the tool's own
// configuration (signing algorithm, argon2id parameters, ...) with the
// store and a fresh master key.
func storeEnv(cfg config.Config, dbURL, key string) map[string]string {
	env := map[string]string{
		"IDP_DATABASE_URL":       dbURL,
		"IDP_SECRET_KEY":         key,
		"IDP_SIGNING_ALG":        cfg.SigningAlg,
		"IDP_ARGON2_MEMORY_KIB":  strconv.FormatUint(uint64(cfg.ArgonMemoryKiB), 10),
		"IDP_ARGON2_ITERATIONS":  strconv.FormatUint(uint64(cfg.ArgonIterations), 10),
		"IDP_LOG_LEVEL":          "warn",
		"IDP_LOGIN_MAX_FAILURES": "10",
	}
	if cfg.ArgonMaxConcurrent > 0 {
		env["IDP_ARGON2_MAX_CONCURRENT"] = strconv.Itoa(cfg.ArgonMaxConcurrent)
	}
	return env
}

func runSQLite(ctx context.Context, o options, cfg config.Config, bin, dir string) (*storeResult, error) {
	d := filepath.Join(dir, "sqlite")
	return runStore(ctx, o, cfg, bin, d, "sqlite", func(run string) (string, error) {
		return "sqlite://" + filepath.Join(d, run, "idp.db"), nil
	})
}

// runPostgres measures against fresh schemas of the PostgreSQL database,
// dropped afterwards.
func runPostgres(ctx context.Context, o options, cfg config.Config, bin, dir string) (*storeResult, error) {
	cctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	conn, err := pgx.Connect(cctx, o.pgURL)
	if err != nil {
		return nil, errSkip("cannot connect to PostgreSQL: " + err.Error())
	}
	conn.Close(cctx)
	var schemas []string
	defer func() {
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer cancel()
		c, err := pgx.Connect(ctx, o.pgURL)
		if err != nil {
			logf("postgres: cannot drop schemas %v: %v", schemas, err)
			return
		}
		defer c.Close(ctx)
		for _, s := range schemas {
			if _, err := c.Exec(ctx, "DROP SCHEMA "+s+" CASCADE"); err != nil {
				logf("postgres: drop schema %s: %v", s, err)
			}
		}
	}()
	return runStore(ctx, o, cfg, bin, filepath.Join(dir, "postgres"), "postgres", func(string) (string, error) {
		schema := "idp_bench_" + hex.EncodeToString(randBytes(6))
		c, err := pgx.Connect(ctx, o.pgURL)
		if err != nil {
			return "", err
		}
		defer c.Close(ctx)
		if _, err := c.Exec(ctx, "CREATE SCHEMA "+schema); err != nil {
			return "", fmt.Errorf("create schema: %w", err)
		}
		schemas = append(schemas, schema)
		u, err := url.Parse(o.pgURL)
		if err != nil {
			return "", err
		}
		q := u.Query()
		q.Set("search_path", schema)
		u.RawQuery = q.Encode()
		return u.String(), nil
	})
}

// warmUp is how many logins run before measuring (connection pools, caches).
const warmUp = 8

// cheapArgon is the cheapest argon2id cost the provider accepts (m=8 MiB,
// t=1), for the run that measures a login's CPU without its hash.
const cheapArgonKiB, cheapArgonTime = 8192, 1

// loadRun is one provider under load.
type loadRun struct {
	name string
	srv  *server
	t    *target
	sd   *seeded
}

// startRun seeds a store and starts the provider on it.
func startRun(ctx context.Context, cfg config.Config, bin, dir, name, dbURL string, users int) (*loadRun, error) {
	if err := mkdir(dir); err != nil {
		return nil, err
	}
	key := randomKey()
	scfg := cfg
	scfg.DatabaseURL, scfg.SecretKey, scfg.SecretKeyFile = dbURL, key, ""
	logf("%s: seeding %d users with an authenticator", name, users)
	sd, err := seed(ctx, scfg, users)
	if err != nil {
		return nil, fmt.Errorf("seed: %w", err)
	}
	srv, err := startServer(ctx, bin, dir, storeEnv(cfg, dbURL, key))
	if err != nil {
		return nil, err
	}
	if err := requireLoopback(srv.URL); err != nil {
		srv.stop()
		return nil, err
	}
	t := &target{URL: srv.URL, ClientID: sd.clientID, ClientSecret: sd.secret,
		RedirectURI: "http://127.0.0.1/callback", transport: newTransport(64)}
	r := &loadRun{name: name, srv: srv, t: t, sd: sd}
	logf("%s: provider pid %d at %s", name, srv.cmd.Process.Pid, srv.URL)
	// Warm-up, not measured: connection pools, caches.
	rec := newRecorder()
	if _, err := runPool(ctx, warmUp, 4, func(ctx context.Context, i int) error {
		return newUser(t, sd.accounts[i], rec).fullLogin(ctx, time.Now, true)
	}); err != nil {
		srv.stop()
		return nil, fmt.Errorf("warm-up: %w (provider log: %s)", err, srv.logTail())
	}
	sd.accounts = sd.accounts[warmUp:]
	if err := r.warmMemory(ctx); err != nil {
		srv.stop()
		return nil, err
	}
	return r, nil
}

// A provider just started has not yet touched the memory its heap grows
// into: until the heap first reaches its collection goal, its allocations
// land on fresh pages, and each page costs a page fault. On the VMs of the
// run recorded in the README (docs/performance.md) that was about 13,000
// faults in the first 1200 login starts, 0.2 ms of kernel time a login, paid
// by whichever phase came first; a server that has been running paid it
// once, long ago. warmMemory opens
// login pages (authorization request and login page, no login) in batches
// of memoryBatch until a batch no longer grows the provider's resident
// memory by more than memoryGrowth, at most memoryBatches batches.
const (
	memoryBatch   = 250
	memoryBatches = 24
	memoryGrowth  = 512 // KiB
)

func (r *loadRun) warmMemory(ctx context.Context) error {
	pid := r.srv.cmd.Process.Pid
	rss, err := procStatusKiB(pid, "VmRSS:")
	if err != nil {
		return err
	}
	start := rss
	for b := 1; b <= memoryBatches; b++ {
		if _, err := runPool(ctx, memoryBatch, 4, func(ctx context.Context, i int) error {
			u := newUser(r.t, &account{}, newRecorder()) // a new browser: no session
			return u.startLogin(ctx, &loginState{p: newPKCE()})
		}); err != nil {
			return fmt.Errorf("warm-up: %w (provider log: %s)", err, r.srv.logTail())
		}
		now, err := procStatusKiB(pid, "VmRSS:")
		if err != nil {
			return err
		}
		grew := now - rss
		rss = now
		if grew <= memoryGrowth {
			logf("%s: warm-up: %d login pages until the provider's memory stopped growing (RSS %.1f -> %.1f MiB)",
				r.name, b*memoryBatch, float64(start)/1024, float64(rss)/1024)
			return nil
		}
	}
	logf("%s: warm-up: the provider's memory still grew after %d login pages (RSS %.1f -> %.1f MiB)",
		r.name, memoryBatches*memoryBatch, float64(start)/1024, float64(rss)/1024)
	return nil
}

// stop closes the tool's idle connections (the provider's graceful
// shutdown would wait for them) and stops the provider.
func (r *loadRun) stop() {
	r.t.transport.CloseIdleConnections()
	r.srv.stop()
}

// measure runs a phase, reads the provider's CPU time around it and logs
// what it measured.
func (r *loadRun) measure(ctx context.Context, label string, n, c int, job func(ctx context.Context, i int) error) (phase, error) {
	p, err := r.slice(ctx, label, 0, n, c, job)
	if err == nil {
		r.logPhase(p)
	}
	return p, err
}

// slice runs jobs lo..hi-1 of a phase and reads the provider's CPU time
// around them.
func (r *loadRun) slice(ctx context.Context, label string, lo, hi, c int, job func(ctx context.Context, i int) error) (phase, error) {
	c0, err := r.srv.cpu()
	if err != nil {
		return phase{}, err
	}
	f0, err := r.srv.faults()
	if err != nil {
		return phase{}, err
	}
	start := time.Now()
	ok, err := runPool(ctx, hi-lo, c, func(ctx context.Context, i int) error { return job(ctx, lo+i) })
	wall := time.Since(start)
	c1, cerr := r.srv.cpu()
	f1, ferr := r.srv.faults()
	if err == nil {
		err = errors.Join(cerr, ferr)
	}
	p := phase{Name: label, Count: ok, Wall: wall, CPU: c1 - c0, Faults: f1 - f0, Errors: hi - lo - ok}
	if err != nil {
		return p, fmt.Errorf("%s phase: %w (provider log: %s)", label, err, r.srv.logTail())
	}
	return p, nil
}

func (r *loadRun) logPhase(p phase) {
	logf("%s: %-15s %5d in %6.2fs %8.1f/s  provider CPU %7.3f ms each, %5.1f page faults", r.name, p.Name, p.Count, p.Wall.Seconds(),
		p.perSec(), ms(p.cpuPerOp()), p.faultsPerOp())
}

// signsPerRound is how many signatures the tool makes between two slices
// of the exchange phase.
const signsPerRound = 20

// rounds are how many slices a phase compared with a reference is cut
// into; the reference is measured before each slice and after the last.
const rounds = 5

// sliced runs a phase in rounds, with ref.run(k) before each and after the
// last, so that the reference is measured across the same minutes as the
// phase.
func (r *loadRun) sliced(ctx context.Context, label string, n, c int, ref *meter, k int, job func(ctx context.Context, i int) error) (phase, error) {
	var p phase
	for j := range rounds {
		if err := ref.run(k); err != nil {
			return p, err
		}
		q, err := r.slice(ctx, label, j*n/rounds, (j+1)*n/rounds, c, job)
		p.add(q)
		if err != nil {
			return p, err
		}
	}
	if err := ref.run(k); err != nil {
		return p, err
	}
	r.logPhase(p)
	return p, nil
}

// runStore measures one store: a run at the configured parameters, then a
// run with the cheapest argon2id cost for the login's CPU without its hash.
func runStore(ctx context.Context, o options, cfg config.Config, bin, dir, name string, dbURL func(run string) (string, error)) (*storeResult, error) {
	res := &storeResult{Store: name}
	u1, err := dbURL("main")
	if err != nil {
		return nil, err
	}
	if err := mainRun(ctx, o, cfg, bin, filepath.Join(dir, "main"), name, u1, res); err != nil {
		return nil, err
	}
	u2, err := dbURL("steps")
	if err != nil {
		return nil, err
	}
	cheap := cfg
	cheap.ArgonMemoryKiB, cheap.ArgonIterations = cheapArgonKiB, cheapArgonTime
	if err := stepRun(ctx, o, cfg, cheap, bin, filepath.Join(dir, "steps"), name, u2, res); err != nil {
		return nil, err
	}
	return res, nil
}

// mainRun: whole logins, refreshes, exchanges, and a burst, at the
// configured parameters.
func mainRun(ctx context.Context, o options, cfg config.Config, bin, dir, name, dbURL string, res *storeResult) error {
	r, err := startRun(ctx, cfg, bin, dir, name, dbURL, warmUp+o.logins+o.burst)
	if err != nil {
		return err
	}
	defer r.stop()
	res.ClientSecretBits, res.ClientSecretHash = r.sd.secretBits, r.sd.secretHash
	main, burst := r.sd.accounts[:o.logins], r.sd.accounts[o.logins:]

	// 1. Whole logins: authorize, password, TOTP, exchange, userinfo, refresh.
	rec := newRecorder()
	users := make([]*user, len(main))
	for i := range main {
		users[i] = newUser(r.t, main[i], rec)
	}
	if res.Flow, err = r.measure(ctx, "flow", len(users), o.concurrency, func(ctx context.Context, i int) error {
		return users[i].fullLogin(ctx, time.Now, true)
	}); err != nil {
		return err
	}

	// 2. Refreshes only, round robin over the logged-in users.
	locks := make([]sync.Mutex, len(users))
	if o.refreshes > 0 {
		if res.Refresh, err = r.measure(ctx, "refresh", o.refreshes, o.concurrency, func(ctx context.Context, i int) error {
			k := i % len(users)
			locks[k].Lock()
			defer locks[k].Unlock()
			return users[k].refreshOnce(ctx)
		}); err != nil {
			return err
		}
	}

	// 3. Codes from the SSO session (no login), then 4. their exchanges
	// alone, so the CPU of an exchange is measured by itself.
	type pending struct {
		u    *user
		code string
		p    pkce
	}
	codes := make([]pending, o.exchanges)
	if res.SSOAuthz, err = r.measure(ctx, "sso_authorize", o.exchanges, o.concurrency, func(ctx context.Context, i int) error {
		u := users[i%len(users)]
		p := newPKCE()
		code, err := u.ssoAuthorize(ctx, p)
		codes[i] = pending{u: u, code: code, p: p}
		return err
	}); err != nil {
		return err
	}
	sign, err := signMeter(ctx, dir, cfg.SigningAlg)
	if err != nil {
		return err
	}
	defer sign.close()
	if res.Exchange, err = r.sliced(ctx, "exchange", o.exchanges, o.concurrency, sign, signsPerRound, func(ctx context.Context, i int) error {
		pc := codes[i]
		k := i % len(users)
		locks[k].Lock() // an exchange stores the user's latest refresh token
		defer locks[k].Unlock()
		_, err := pc.u.exchange(ctx, pc.code, pc.p)
		return err
	}); err != nil {
		return err
	}
	res.RefSignCPU = sign.per()
	logf("%s: measured by the tool alongside: one %s signature %.3f ms", name, cfg.SigningAlg, ms(res.RefSignCPU))

	// 5. A burst of concurrent logins, all at once: the peak memory.
	if res.PeakRSS, err = r.srv.peakRSS(); err != nil {
		return err
	}
	if err := r.srv.resetPeakRSS(); err != nil {
		return fmt.Errorf("reset the provider's peak RSS: %w", err)
	}
	burstRec := newRecorder()
	if res.Burst, err = r.measure(ctx, "burst", len(burst), len(burst), func(ctx context.Context, i int) error {
		return newUser(r.t, burst[i], burstRec).fullLogin(ctx, time.Now, false)
	}); err != nil {
		return err
	}
	if res.BurstRSS, err = r.srv.peakRSS(); err != nil {
		return err
	}
	res.PeakRSS = max(res.PeakRSS, res.BurstRSS)
	res.Latencies = rec.lat
	logf("%s: peak RSS %.1f MiB (during the burst of %d: %.1f MiB)", name, float64(res.PeakRSS)/1024, len(burst), float64(res.BurstRSS)/1024)
	return nil
}

// stepRun measures a login step by step (each step for every user before
// the next, so each step's CPU is measured by itself, every step with the
// same number of users at once) on a provider whose argon2id cost is the
// cheapest there is (cheap): what the login costs the provider apart from
// the hash. The hashes' CPU, which the provider counts with its hashing
// threads' own clocks, is subtracted; the reference, one hash at the
// configured cost (cfg), is measured between the slices of every step.
func stepRun(ctx context.Context, o options, cfg, cheap config.Config, bin, dir, name, dbURL string, res *storeResult) error {
	ref, err := hashMeter(ctx, argonParams(cfg), cfg.ArgonMaxConcurrent)
	if err != nil {
		return err
	}
	r, err := startRun(ctx, cheap, bin, dir, name+"/no-hash", dbURL, warmUp+o.steps)
	if err != nil {
		return err
	}
	defer r.stop()
	rec := newRecorder()
	users := make([]*user, o.steps)
	states := make([]*loginState, o.steps)
	for i := range users {
		users[i] = newUser(r.t, r.sd.accounts[i], rec)
		states[i] = &loginState{p: newPKCE()}
	}
	tokens := make([]*tokenResponse, len(users))
	c := o.concurrency
	before, err := readCounts(ctx, r.srv.metricsURL)
	if err != nil {
		return err
	}
	requests0 := r.t.requests.Load()
	for _, st := range []struct {
		p    *phase
		name string
		c    int
		job  func(ctx context.Context, i int) error
	}{
		{&res.LoginStart, "login.start", c, func(ctx context.Context, i int) error {
			return users[i].startLogin(ctx, states[i])
		}},
		{&res.LoginPassword, "login.password", c, func(ctx context.Context, i int) error {
			return users[i].submitPassword(ctx, states[i])
		}},
		{&res.LoginTOTP, "login.totp", c, func(ctx context.Context, i int) error {
			return users[i].submitTOTP(ctx, states[i], time.Now)
		}},
		{&res.LoginExchange, "login.exchange", c, func(ctx context.Context, i int) error {
			var err error
			tokens[i], err = users[i].exchange(ctx, states[i].code, states[i].p)
			return err
		}},
		{&res.LoginUserinfo, "login.userinfo", c, func(ctx context.Context, i int) error {
			return users[i].userinfo(ctx, tokens[i].AccessToken)
		}},
	} {
		if *st.p, err = r.sliced(ctx, st.name, len(users), st.c, ref, 1, st.job); err != nil {
			return err
		}
	}
	after, err := readCounts(ctx, r.srv.metricsURL)
	if err != nil {
		return err
	}
	// Only the password step hashes, once per login.
	if n := after.hashes - before.hashes; n != int64(res.LoginPassword.Count) || after.hashCPU <= before.hashCPU {
		return fmt.Errorf("the provider counted %d hashes and %v of their CPU for %d password steps",
			n, after.hashCPU-before.hashCPU, res.LoginPassword.Count)
	}
	res.CheapHashCPU = (after.hashCPU - before.hashCPU) / time.Duration(res.LoginPassword.Count)
	res.LoginRequests = float64(r.t.requests.Load()-requests0) / float64(len(users))
	res.LoginStoreCalls = float64(after.storeCalls-before.storeCalls) / float64(len(users))
	res.RefHashCPU = ref.per()
	logf("%s: the provider's cheapest hash %.3f ms (its own count); measured by the tool alongside: one hash at the configured cost %.2f ms",
		r.name, ms(res.CheapHashCPU), ms(res.RefHashCPU))
	res.LoginStoreWrites = float64(after.storeWrites-before.storeWrites) / float64(len(users))
	read, write, err := storeCallMeters(ctx, cheap, dbURL)
	if err != nil {
		return fmt.Errorf("store call meters: %w", err)
	}
	defer write.close()
	if res.StoreCallCPU, err = read.concurrent(o.concurrency, o.calibTime/2); err != nil {
		return fmt.Errorf("store read meter: %w", err)
	}
	if res.StoreWriteCPU, err = write.concurrent(o.concurrency, o.calibTime/2); err != nil {
		return fmt.Errorf("store write meter: %w", err)
	}
	logf("%s: a login made %.1f requests and %.1f store calls (%.1f of them write); the cheapest store call costs %.1f µs, the cheapest write %.1f µs",
		r.name, res.LoginRequests, res.LoginStoreCalls, res.LoginStoreWrites, us(res.StoreCallCPU), us(res.StoreWriteCPU))
	return nil
}
