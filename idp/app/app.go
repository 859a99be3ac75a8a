// Package app wires the provider together from its configuration: the
// store, the master key, the password hasher, the signing keys, fosite and
// the web layer. The CLI and the end-to-end tests both start it from here;
// it also holds the administrative operations the CLI exposes.
package app

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"net/http"
	"net/url"
	"os"
	"runtime"
	"runtime/debug"
	"strings"
	"sync"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/kamera-id/idp/idp/config"
	"github.com/kamera-id/idp/idp/crypt"
	"github.com/kamera-id/idp/idp/keys"
	"github.com/kamera-id/idp/idp/mail"
	"github.com/kamera-id/idp/idp/metrics"
	"github.com/kamera-id/idp/idp/oidc"
	"github.com/kamera-id/idp/idp/password"
	"github.com/kamera-id/idp/idp/store"
	"github.com/kamera-id/idp/idp/store/postgres"
	"github.com/kamera-id/idp/idp/store/sqlite"
	"github.com/kamera-id/idp/idp/web"
)

// App is a configured provider.
type App struct {
	Config   config.Config
	Store    store.Store
	Key      *crypt.Key
	Hasher   *password.Hasher
	Keys     *keys.Manager
	Provider *oidc.Provider
	Web      *web.Server
	Logger   *slog.Logger
	Now      func() time.Time
	// Metrics is the Prometheus registry, nil unless IDP_METRICS_LISTEN
	// is set; serve MetricsHandler on that address.
	Metrics *metrics.Prometheus
	// Outbox queues mails; MailWorker sends them (RunMail).
	Outbox     *mail.Outbox
	MailWorker *mail.Worker
}

// Options adjust how Open builds the app (tests move the clock).
type Options struct {
	Logger *slog.Logger
	Now    func() time.Time
	// Migrate applies pending migrations on open (always on for the
	// embedded store; PostgreSQL deployments run `idp migrate`).
	Migrate bool
	// LeaveKeys opens without creating or rotating signing keys, for the
	// administrative commands: only the servers (idp serve), whose
	// IDP_SIGNING_ALG discovery advertises, make the first key or a key of
	// a newly configured algorithm; a command run from a shell without
	// that setting must not make a key of another algorithm current.
	// `idp keys rotate` rotates explicitly (Keys.Rotate).
	LeaveKeys bool
}

// migrator is implemented by both stores.
type migrator interface {
	Migrate(ctx context.Context) error
	Pending(ctx context.Context) ([]string, error)
}

// OpenStore opens the configured store, migrating it when asked to (or when
// it is the embedded one).
func OpenStore(ctx context.Context, cfg config.Config, migrate bool) (store.Store, error) {
	var (
		st  store.Store
		err error
	)
	if cfg.Embedded() {
		st, err = sqlite.Open(ctx, cfg.SQLitePath())
		migrate = true
	} else {
		st, err = postgres.Open(ctx, cfg.DatabaseURL)
	}
	if err != nil {
		return nil, fmt.Errorf("open database: %w", err)
	}
	m, ok := st.(migrator)
	if !ok {
		st.Close()
		return nil, errors.New("store cannot migrate")
	}
	if migrate {
		if err := m.Migrate(ctx); err != nil {
			st.Close()
			return nil, fmt.Errorf("migrate: %w", err)
		}
		return st, nil
	}
	// PostgreSQL deployments migrate once per release with `idp migrate`;
	// refuse to run on a schema this binary does not know yet.
	pending, err := m.Pending(ctx)
	if err == nil && len(pending) > 0 {
		err = fmt.Errorf("the database schema is not up to date (%d pending migrations): run `idp migrate`", len(pending))
	}
	if err != nil {
		st.Close()
		return nil, err
	}
	return st, nil
}

// LoadKey reads the master key: IDP_SECRET_KEY, or the key file (created on
// first start with the embedded store, never for PostgreSQL). A key file
// that group or others may read or write is logged as a warning.
func LoadKey(cfg config.Config, log *slog.Logger) (*crypt.Key, error) {
	if cfg.SecretKey != "" {
		return crypt.ParseKey(cfg.SecretKey)
	}
	load := crypt.LoadKeyFile
	if createsKeyFile(cfg) {
		load = crypt.LoadOrCreateKeyFile
	}
	k, err := load(cfg.SecretKeyFile)
	if err == nil {
		warnExposedKeyFile(log, cfg.SecretKeyFile)
	}
	return k, err
}

// createsKeyFile reports whether LoadKey creates the key file when it is
// missing: with the embedded store, at the default path or the one
// IDP_SECRET_KEY_FILE names (a database that already holds sealed data
// refuses it: nothingSealed). PostgreSQL's is never generated: instances
// sharing the database must share the key.
func createsKeyFile(cfg config.Config) bool {
	return cfg.SecretKey == "" && cfg.Embedded()
}

// keyFileToCreate reports whether LoadKey would create the key file: the
// embedded store's, missing.
func keyFileToCreate(cfg config.Config) bool {
	if !createsKeyFile(cfg) {
		return false
	}
	_, err := os.Stat(cfg.SecretKeyFile)
	return errors.Is(err, fs.ErrNotExist)
}

// nothingSealed refuses to let LoadKey create a missing key file for a
// database that was used with a master key already (its check is stored:
// checkMasterKey), or, from before the check was kept, holds signing keys:
// what it sealed with that key (copied or restored without its key file, or
// a key file named with a typo) a new key could not read, and a new file
// would then stand in the way of the right one at every start. A key file
// that another process made meanwhile (a concurrent first start) is no
// reason to refuse: LoadKey reads it, and checkMasterKey compares it.
func nothingSealed(ctx context.Context, cfg config.Config, st store.Store) error {
	if _, err := os.Stat(cfg.SecretKeyFile); err == nil {
		return nil
	}
	used := false
	if _, err := st.MasterKeyCheck(ctx); err == nil {
		used = true
	} else if !errors.Is(err, store.ErrNotFound) {
		return err
	}
	if !used {
		ks, err := st.ListSigningKeys(ctx)
		if err != nil {
			return err
		}
		used = len(ks) > 0
	}
	if used {
		return fmt.Errorf("master key: %s is missing, but the database was used with a master key "+
			"(copied or restored without its key file, or the file's name mistyped?): put that key file there; a new key could not read what it sealed", cfg.SecretKeyFile)
	}
	return nil
}

// checkMasterKey records the master key's check value in a database used
// for the first time, and refuses a key other than the one the database
// was first used with: everything it sealed (TOTP secrets, backup codes,
// signing keys, client secrets) would be unreadable, and what this start
// sealed, unreadable to the right key.
func checkMasterKey(ctx context.Context, cfg config.Config, st store.Store, key *crypt.Key, now time.Time) error {
	check := key.MAC("master-key-check", nil)
	stored, err := st.MasterKeyCheck(ctx)
	if errors.Is(err, store.ErrNotFound) {
		// None recorded yet: a new database, or one from before the check
		// was kept (migration 0010). The latter's signing keys say which
		// key it was used with: another one is not recorded.
		ks, lerr := st.ListSigningKeys(ctx)
		if lerr != nil {
			return fmt.Errorf("master key: %w", lerr)
		}
		if len(ks) > 0 && !keys.Opens(key, &ks[0]) {
			return wrongMasterKey(cfg)
		}
		stored, err = st.RecordMasterKeyCheck(ctx, check, now)
	}
	if err != nil {
		return fmt.Errorf("master key: %w", err)
	}
	if !crypt.Equal(stored, check) {
		return wrongMasterKey(cfg)
	}
	return nil
}

func wrongMasterKey(cfg config.Config) error {
	source := "IDP_SECRET_KEY"
	if cfg.SecretKey == "" {
		source = "the key file " + cfg.SecretKeyFile
	}
	return fmt.Errorf("master key: %s is not the key this database was first used with, which sealed its TOTP secrets, "+
		"backup codes, signing keys and client secrets: give the provider that key", source)
}

// warnExposedKeyFile warns when the master key file's mode lets its group or
// others read or write it. OpenSSH refuses a private key like that; the
// provider only warns, so that deployments that started before still start.
func warnExposedKeyFile(log *slog.Logger, path string) {
	if runtime.GOOS == "windows" { // no such mode bits
		return
	}
	st, err := os.Stat(path)
	if err != nil {
		return // it was read a moment ago: nothing to say about its mode
	}
	if perm := st.Mode().Perm(); perm&0o066 != 0 {
		log.Warn("the master key file is readable or writable by group or others: make it mode 0600 (or 0400), owned by the provider's user",
			"file", path, "mode", fmt.Sprintf("%04o", perm))
	}
}

// Open builds the whole provider.
func Open(ctx context.Context, cfg config.Config, opt Options) (*App, error) {
	if opt.Logger == nil {
		opt.Logger = slog.Default()
	}
	opt.Logger = web.WithRequestIDs(opt.Logger)
	if opt.Now == nil {
		opt.Now = time.Now
	}
	// The key first, so that a bad one stops the start before the store is
	// touched; only a key file the embedded store is about to create waits
	// for the store, which must not hold anything sealed yet.
	var (
		key *crypt.Key
		err error
	)
	if !keyFileToCreate(cfg) {
		if key, err = LoadKey(cfg, opt.Logger); err != nil {
			return nil, err
		}
	}
	st, err := OpenStore(ctx, cfg, opt.Migrate)
	if err != nil {
		return nil, err
	}
	if key == nil {
		if err := nothingSealed(ctx, cfg, st); err != nil {
			st.Close()
			return nil, err
		}
		if key, err = LoadKey(cfg, opt.Logger); err != nil {
			st.Close()
			return nil, err
		}
	}
	if err := checkMasterKey(ctx, cfg, st, key, opt.Now()); err != nil {
		st.Close()
		return nil, err
	}
	a := &App{Config: cfg, Store: st, Key: key, Logger: opt.Logger, Now: opt.Now}
	var rec metrics.Recorder = metrics.Nop{}
	if cfg.MetricsListen != "" {
		a.Metrics = metrics.NewPrometheus()
		if db, ok := st.(interface{ DB() *sql.DB }); ok {
			a.Metrics.WatchPool(db.DB().Stats)
		}
		rec = a.Metrics
		a.Store = metrics.WrapStore(st, rec)
		st = a.Store
	}
	a.Hasher = password.New(password.Params{
		Memory: cfg.ArgonMemoryKiB, Time: cfg.ArgonIterations, Threads: password.DefaultParams.Threads,
		SaltLen: password.DefaultParams.SaltLen, KeyLen: password.DefaultParams.KeyLen,
	}, cfg.ArgonMaxConcurrent)
	if a.Metrics != nil {
		a.Metrics.WatchHasher(a.Hasher.Stats)
	}
	a.Keys = keys.NewManager(keys.ManagerConfig{
		Store: st, Key: key, Algorithm: cfg.SigningAlg, Now: opt.Now,
		// A retired key stays published while ID tokens it signed live.
		KeepRetired: cfg.IDTokenTTL + 10*time.Minute, TokenTTL: cfg.IDTokenTTL,
	})
	if !opt.LeaveKeys {
		if err := a.Keys.Ensure(ctx); err != nil {
			st.Close()
			return nil, fmt.Errorf("signing keys: %w", err)
		}
	}
	a.Provider, err = oidc.New(oidc.Config{
		Issuer: cfg.Issuer, SigningAlg: cfg.SigningAlg,
		HMACSecret:     key.Derive("fosite-hmac", 32),
		SecretHasher:   SecretHasher{Key: key},
		AccessTokenTTL: cfg.AccessTokenTTL, IDTokenTTL: cfg.IDTokenTTL,
		RefreshTokenTTL: cfg.RefreshTokenTTL, AuthCodeTTL: cfg.AuthCodeTTL, RefreshGrace: cfg.RefreshTokenGrace,
		Logger: opt.Logger, Metrics: rec,
	}, st, a.Keys)
	if err != nil {
		st.Close()
		return nil, err
	}
	a.Outbox = mail.NewOutbox(st, key, opt.Now)
	var sender mail.Sender = &mail.Dir{Path: cfg.MailDir(), Logger: opt.Logger}
	if cfg.SMTPURL != "" {
		smtp, err := mail.ParseSMTPURL(cfg.SMTPURL)
		if err != nil {
			st.Close()
			return nil, err
		}
		sender = smtp
	}
	a.MailWorker = &mail.Worker{
		Outbox: a.Outbox, Sender: sender, From: cfg.MailFrom, Logger: opt.Logger,
		Poll: cfg.MailPoll, RetryBase: cfg.MailRetryBase, RetryMax: cfg.MailRetryMax, Metrics: rec,
	}
	a.Web = web.New(web.Deps{
		Config: cfg, Store: st, Key: key, Hasher: a.Hasher, Provider: a.Provider, Logger: opt.Logger, Now: opt.Now,
		Metrics: rec, Outbox: a.Outbox,
	})
	return a, nil
}

// gcBaseMemory is the provider's memory apart from the password hashes: its
// heap at rest and the requests in flight, with room to spare.
const gcBaseMemory = 48 << 20

// TuneGC sets the garbage collector for a provider (idp serve, and the load
// tool measuring hashes on every core as the provider computes them),
// unless GOGC or GOMEMLIMIT in getenv says otherwise: a soft memory limit,
// the hashes' memory (hashMemory, bounded by the hasher) plus a base, which
// bounds the heap in a burst of logins, and GOGC=400 (gcPercent) below it.
// The hashes' memory is allocated once and kept by the hasher (one buffer per
// concurrent hash), so what the collector sees is the requests' garbage.
// GOGC=400 was chosen when every hash allocated its memory (with GOGC=100
// nearly every hash started a collection); since the hasher keeps its
// buffers, the load tool measures no difference between 100 and 400, and
// 400 still makes collections rarer. It returns the limit, and false when
// the environment chose.
func TuneGC(getenv func(string) string, hashMemory int64) (int64, bool) {
	if getenv("GOGC") != "" || getenv("GOMEMLIMIT") != "" {
		return 0, false
	}
	limit := gcBaseMemory + hashMemory
	debug.SetMemoryLimit(limit)
	debug.SetGCPercent(gcPercent)
	return limit, true
}

// gcPercent is the GOGC TuneGC sets.
const gcPercent = 400

// Handler is the provider's HTTP handler.
func (a *App) Handler() http.Handler { return a.Web }

// MetricsHandler serves the Prometheus metrics (GET /metrics), or nil when
// metrics are off. It belongs on IDP_METRICS_LISTEN, never on the public
// listener.
func (a *App) MetricsHandler() http.Handler {
	if a.Metrics == nil {
		return nil
	}
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", a.Metrics.Handler())
	return mux
}

// Close waits for the work requests left for after their answers, and
// releases the store.
func (a *App) Close() error {
	a.Web.Wait() // what requests left for after their answers uses the store
	return a.Store.Close()
}

// SecretHasher stores client secrets as a keyed hash. Secrets are generated
// by the provider with 256 bits of entropy, so a fast keyed hash is as safe
// as a slow one and keeps the token endpoint cheap.
type SecretHasher struct{ Key *crypt.Key }

// Hash implements fosite.Hasher.
func (h SecretHasher) Hash(_ context.Context, data []byte) ([]byte, error) {
	return h.Key.MAC("client-secret", data), nil
}

// Compare implements fosite.Hasher in constant time.
func (h SecretHasher) Compare(_ context.Context, hash, data []byte) error {
	if !crypt.Equal(hash, h.Key.MAC("client-secret", data)) {
		return errors.New("client secret mismatch")
	}
	return nil
}

// ValidateRedirectURI checks a URI a client registers: absolute, no
// fragment, no user information, no white space or control characters,
// https to a host without wildcards (or http on a loopback host, or a
// private-use scheme for native apps, with something after its colon).
func ValidateRedirectURI(raw string) error {
	if !utf8.ValidString(raw) {
		// Stored as JSON it would come back altered (U+FFFD), and match no
		// request.
		return fmt.Errorf("redirect URI %q: not valid UTF-8", raw)
	}
	u, err := url.Parse(raw)
	if err != nil || u.Scheme == "" || !u.IsAbs() {
		return fmt.Errorf("redirect URI %q: not an absolute URI", raw)
	}
	if strings.IndexFunc(raw, func(r rune) bool { return unicode.IsSpace(r) || unicode.IsControl(r) }) >= 0 {
		return fmt.Errorf("redirect URI %q: must not contain white space or control characters", raw)
	}
	if u.Fragment != "" || strings.Contains(raw, "#") {
		return fmt.Errorf("redirect URI %q: must not contain a fragment", raw)
	}
	if u.User != nil {
		return fmt.Errorf("redirect URI %q: must not contain a user name or password", raw)
	}
	switch u.Scheme {
	case "https":
		if u.Host == "" {
			return fmt.Errorf("redirect URI %q: no host", raw)
		}
		if strings.Contains(u.Host, "*") {
			return fmt.Errorf("redirect URI %q: no wildcards (redirect URIs match exactly)", raw)
		}
	case "http":
		h := strings.ToLower(u.Hostname())
		if h != "localhost" && h != "127.0.0.1" && h != "::1" {
			return fmt.Errorf("redirect URI %q: plain http is allowed only for localhost", raw)
		}
	case "javascript", "data", "file", "vbscript":
		return fmt.Errorf("redirect URI %q: scheme %s is not allowed", raw, u.Scheme)
	default:
		if !strings.Contains(u.Scheme, ".") {
			return fmt.Errorf("redirect URI %q: a custom scheme must be a reverse domain name (RFC 8252)", raw)
		}
		if u.Opaque == "" && u.Host == "" && u.Path == "" {
			return fmt.Errorf("redirect URI %q: a custom scheme needs a path or authority after its colon (RFC 8252 7.1: com.example.app:/callback)", raw)
		}
	}
	return nil
}

// cleanupBatch bounds each delete, so the job never holds long locks.
const cleanupBatch = 500

// Cleanup deletes expired codes, tokens, sessions, flows, pending
// enrollments and password reset tokens, and mails older than
// IDP_MAIL_KEEP, in bounded batches until none are left, and says how many
// rows went.
func (a *App) Cleanup(ctx context.Context) (int, error) {
	total := 0
	for {
		n, err := a.Store.DeleteExpired(ctx, a.Now(), cleanupBatch)
		total += n
		if err != nil {
			return total, err
		}
		if n == 0 {
			break
		}
	}
	for {
		n, err := a.Store.DeleteMailBefore(ctx, a.Now().Add(-a.Config.MailKeep), cleanupBatch)
		total += n
		if err != nil || n == 0 {
			return total, err
		}
	}
}

// RunMail sends the outbox's mails until ctx ends (idp serve). Several
// instances may run it at once: each mail is claimed by one of them.
func (a *App) RunMail(ctx context.Context) {
	dest := "the dev mail folder " + a.Config.MailDir()
	if a.Config.SMTPURL != "" {
		dest = fmt.Sprint(a.MailWorker.Sender)
	}
	a.Logger.Info("mail sender started", "to", dest)
	a.MailWorker.Run(ctx)
}

// finalMailTimeout bounds the last send of a stopping instance (StartJobs).
const finalMailTimeout = 5 * time.Second

// StartJobs starts a serving instance's background jobs: the cleanup (every
// cleanupEvery) and the mail sender, until stop. Call stop once the
// listeners have shut down, before Close: it waits for the work requests
// left for after their answers (a password reset's link made and its mail
// queued) while the sender still runs, then stops the jobs and waits for
// them to return (a send in flight has its outcome recorded while the store
// is open), then sends the mails still due, for at most finalMailTimeout.
// stop may be called more than once.
func (a *App) StartJobs(cleanupEvery time.Duration) (stop func()) {
	ctx, cancel := context.WithCancel(context.Background())
	var jobs sync.WaitGroup
	jobs.Go(func() { a.RunCleanup(ctx, cleanupEvery) })
	jobs.Go(func() { a.RunMail(ctx) })
	var once sync.Once
	return func() {
		once.Do(func() {
			a.Web.Wait()
			cancel()
			jobs.Wait()
			a.sendDue(finalMailTimeout)
		})
	}
}

// sendDue sends the outbox's due mails, for at most timeout.
func (a *App) sendDue(timeout time.Duration) {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	if err := a.MailWorker.SendAllDue(ctx); err != nil && ctx.Err() == nil {
		a.Logger.Warn("mail outbox unavailable at shutdown: the mails due are sent at the next start", "err", err)
	}
}

// RunCleanup runs Cleanup every interval until ctx ends. Several instances
// may run it at once: deleting an expired row twice is harmless.
func (a *App) RunCleanup(ctx context.Context, interval time.Duration) {
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		n, err := a.Cleanup(ctx)
		if err != nil && ctx.Err() == nil {
			a.Logger.Warn("cleanup of expired records failed", "err", err)
		} else if n > 0 {
			a.Logger.Info("deleted expired records", "rows", n)
		}
	}
}
