package main

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/hex"
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
	"github.com/kamera-id/idp/idp/store"
)

// phase is what one phase of the run measured.
type phase struct {
	Name   string
	Count  int           // operations completed
	Wall   time.Duration // wall time
	CPU    time.Duration // the provider's CPU time
	Errors int
}

func (p phase) perSec() float64 { return float64(p.Count) / p.Wall.Seconds() }
func (p phase) cpuPerOp() time.Duration {
	if p.Count == 0 {
		return 0
	}
	return p.CPU / time.Duration(p.Count)
}

// storeResult is everything measured against one store.
type storeResult struct {
	Store     string
	Flow      phase // whole logins with refresh
	Refresh   phase
	SSOAuthz  phase
	Exchange  phase
	Burst     phase
	PeakRSS   int64 // KiB, the whole run up to the burst
	BurstRSS  int64 // KiB, peak during the burst
	Latencies map[string][]time.Duration
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
		if err := a.Store.PutPendingTOTP(ctx, &store.PendingTOTP{
			UserID: u.ID, SecretEnc: mfa.SealSecret(a.Key, u.ID, totp), CreatedAt: now, ExpiresAt: now.Add(time.Hour),
		}); err != nil {
			return nil, err
		}
		codes, err := mfa.GenerateBackupCodes(mfa.BackupCodeCount)
		if err != nil {
			return nil, err
		}
		if err := a.Store.ConfirmTOTP(ctx, u.ID, 0, mfa.SealBackupCodes(a.Key, u.ID, codes), now); err != nil {
			return nil, err
		}
		s.accounts = append(s.accounts, &account{Email: u.Email, Password: seedPassword, Secret: totp})
	}
	return s, nil
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
	return runStore(ctx, o, cfg, bin, d, "sqlite", "sqlite://"+filepath.Join(d, "idp.db"))
}

// runPostgres measures against a fresh schema of the PostgreSQL database,
// dropped afterwards.
func runPostgres(ctx context.Context, o options, cfg config.Config, bin, dir string) (*storeResult, error) {
	cctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	conn, err := pgx.Connect(cctx, o.pgURL)
	if err != nil {
		return nil, errSkip("cannot connect to PostgreSQL: " + err.Error())
	}
	schema := "idp_bench_" + hex.EncodeToString(randBytes(6))
	_, err = conn.Exec(cctx, "CREATE SCHEMA "+schema)
	conn.Close(cctx)
	if err != nil {
		return nil, fmt.Errorf("create schema: %w", err)
	}
	defer func() {
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer cancel()
		if c, err := pgx.Connect(ctx, o.pgURL); err == nil {
			_, _ = c.Exec(ctx, "DROP SCHEMA "+schema+" CASCADE")
			c.Close(ctx)
		}
	}()
	u, err := url.Parse(o.pgURL)
	if err != nil {
		return nil, err
	}
	q := u.Query()
	q.Set("search_path", schema)
	u.RawQuery = q.Encode()
	return runStore(ctx, o, cfg, bin, filepath.Join(dir, "postgres"), "postgres", u.String())
}

// warmUp is how many logins run before measuring (connection pools, caches).
const warmUp = 8

// runStore seeds the store, starts the provider on it and runs the phases.
func runStore(ctx context.Context, o options, cfg config.Config, bin, dir, name, dbURL string) (*storeResult, error) {
	if err := mkdir(dir); err != nil {
		return nil, err
	}
	key := randomKey()
	scfg := cfg
	scfg.DatabaseURL, scfg.SecretKey, scfg.SecretKeyFile = dbURL, key, ""
	logf("%s: seeding %d users with an authenticator", name, warmUp+o.logins+o.burst)
	sd, err := seed(ctx, scfg, warmUp+o.logins+o.burst)
	if err != nil {
		return nil, fmt.Errorf("seed: %w", err)
	}
	srv, err := startServer(ctx, bin, dir, storeEnv(cfg, dbURL, key))
	if err != nil {
		return nil, err
	}
	defer srv.stop()
	if err := requireLoopback(srv.URL); err != nil {
		return nil, err
	}
	t := &target{URL: srv.URL, ClientID: sd.clientID, ClientSecret: sd.secret,
		RedirectURI: "http://127.0.0.1/callback", transport: newTransport(max(o.concurrency, o.burst))}
	res := &storeResult{Store: name, ClientSecretBits: sd.secretBits, ClientSecretHash: sd.secretHash}
	accts := sd.accounts
	warm, main, burst := accts[:warmUp], accts[warmUp:warmUp+o.logins], accts[warmUp+o.logins:]

	// measure runs a phase and reads the provider's CPU time around it.
	measure := func(label string, n, c int, job func(ctx context.Context, i int) error) (phase, error) {
		c0, err := srv.cpu()
		if err != nil {
			return phase{}, err
		}
		start := time.Now()
		ok, err := runPool(ctx, n, c, job)
		wall := time.Since(start)
		c1, cerr := srv.cpu()
		if err == nil {
			err = cerr
		}
		p := phase{Name: label, Count: ok, Wall: wall, CPU: c1 - c0, Errors: n - ok}
		if err != nil {
			return p, fmt.Errorf("%s phase: %w (provider log: %s)", label, err, srv.logTail())
		}
		logf("%s: %-13s %5d in %6.2fs  %8.1f/s  provider CPU %.3f ms each", name, label, ok, wall.Seconds(),
			p.perSec(), ms(p.cpuPerOp()))
		return p, nil
	}

	// Warm-up: not measured.
	warmRec := newRecorder()
	if _, err := runPool(ctx, len(warm), 4, func(ctx context.Context, i int) error {
		return newUser(t, warm[i], warmRec).fullLogin(ctx, time.Now, true)
	}); err != nil {
		return nil, fmt.Errorf("warm-up: %w (provider log: %s)", err, srv.logTail())
	}

	// 1. Whole logins: authorize, password, TOTP, exchange, userinfo, refresh.
	rec := newRecorder()
	users := make([]*user, len(main))
	for i := range main {
		users[i] = newUser(t, main[i], rec)
	}
	if res.Flow, err = measure("flow", len(users), o.concurrency, func(ctx context.Context, i int) error {
		return users[i].fullLogin(ctx, time.Now, true)
	}); err != nil {
		return nil, err
	}

	// 2. Refreshes only, round robin over the logged-in users.
	locks := make([]sync.Mutex, len(users))
	if o.refreshes > 0 {
		if res.Refresh, err = measure("refresh", o.refreshes, o.concurrency, func(ctx context.Context, i int) error {
			k := i % len(users)
			locks[k].Lock()
			defer locks[k].Unlock()
			return users[k].refreshOnce(ctx)
		}); err != nil {
			return nil, err
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
	if res.SSOAuthz, err = measure("sso_authorize", o.exchanges, o.concurrency, func(ctx context.Context, i int) error {
		u := users[i%len(users)]
		p := newPKCE()
		code, err := u.ssoAuthorize(ctx, p)
		codes[i] = pending{u: u, code: code, p: p}
		return err
	}); err != nil {
		return nil, err
	}
	if res.Exchange, err = measure("exchange", o.exchanges, o.concurrency, func(ctx context.Context, i int) error {
		pc := codes[i]
		k := i % len(users)
		locks[k].Lock() // exchange stores the user's latest refresh token
		defer locks[k].Unlock()
		_, err := pc.u.exchange(ctx, pc.code, pc.p)
		return err
	}); err != nil {
		return nil, err
	}

	// 5. A burst of concurrent logins, all at once: the peak memory.
	if res.PeakRSS, err = srv.peakRSS(); err != nil {
		return nil, err
	}
	if err := srv.resetPeakRSS(); err != nil {
		return nil, fmt.Errorf("reset the provider's peak RSS: %w", err)
	}
	burstRec := newRecorder()
	if res.Burst, err = measure("burst", len(burst), len(burst), func(ctx context.Context, i int) error {
		return newUser(t, burst[i], burstRec).fullLogin(ctx, time.Now, false)
	}); err != nil {
		return nil, err
	}
	if res.BurstRSS, err = srv.peakRSS(); err != nil {
		return nil, err
	}
	res.PeakRSS = max(res.PeakRSS, res.BurstRSS)
	res.Latencies = rec.lat
	logf("%s: peak RSS %.1f MiB (during the burst of %d: %.1f MiB)", name, float64(res.PeakRSS)/1024, len(burst), float64(res.BurstRSS)/1024)
	return res, nil
}
