// Package config reads the provider's configuration from the environment
// (and optionally a KEY=VALUE file that the environment overrides), with the
// defaults of the external contract.
package config

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"net"
	"net/mail"
	"net/netip"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/kamera-id/idp/idp/password"
)

// Config is the whole configuration. The zero value is not useful: use Load.
type Config struct {
	Issuer string // IDP_ISSUER
	Listen string // IDP_LISTEN
	// MetricsListen is the address of the Prometheus metrics listener,
	// separate from the public one; empty turns metrics off.
	MetricsListen string // IDP_METRICS_LISTEN
	// TrustedProxies are the load balancers / reverse proxies (IPs or
	// CIDRs, comma-separated) whose X-Forwarded-For is believed for the
	// client IP; empty: the connection's address is the client's.
	TrustedProxies string // IDP_TRUSTED_PROXIES
	DatabaseURL    string // IDP_DATABASE_URL: sqlite://PATH or postgres://...
	SecretKeyFile  string // IDP_SECRET_KEY_FILE
	SecretKey      string // IDP_SECRET_KEY: the key itself, instead of a file

	// ShutdownDrain is how long idp serve keeps serving after SIGTERM, with
	// /readyz failing, before it stops accepting connections; 0: no drain.
	ShutdownDrain time.Duration // IDP_SHUTDOWN_DRAIN

	TOTPIssuer string // IDP_TOTP_ISSUER: the name shown in authenticator apps

	SessionIdleTimeout time.Duration // IDP_SESSION_IDLE_TIMEOUT
	SessionMaxAge      time.Duration // IDP_SESSION_MAX_AGE (absolute)
	RememberMe         time.Duration // IDP_REMEMBER_ME_DURATION
	FlowLifetime       time.Duration // IDP_FLOW_LIFETIME: a login or setup left half-way
	AccessTokenTTL     time.Duration // IDP_ACCESS_TOKEN_TTL
	IDTokenTTL         time.Duration // IDP_ID_TOKEN_TTL
	RefreshTokenTTL    time.Duration // IDP_REFRESH_TOKEN_TTL
	// RefreshTokenGrace is how long a refresh token spent by a refresh may
	// be used again, for a refresh whose answer was lost, while the token
	// that refresh issued is unused (oidc.Storage.RefreshGrace); 0: never.
	RefreshTokenGrace time.Duration // IDP_REFRESH_TOKEN_GRACE
	AuthCodeTTL       time.Duration // IDP_AUTH_CODE_TTL

	SigningAlg string // IDP_SIGNING_ALG: RS256 (default) or ES256
	LogLevel   string // IDP_LOG_LEVEL

	// Second-step failures per account before a lockout, and its length.
	MFAMaxFailures int           // IDP_MFA_MAX_FAILURES
	MFALockout     time.Duration // IDP_MFA_LOCKOUT (doubles with each further lockout)
	MFAMaxLockout  time.Duration // IDP_MFA_MAX_LOCKOUT

	// Password failures per account and per client IP.
	LoginMaxFailures   int           // IDP_LOGIN_MAX_FAILURES (per account)
	LoginIPMaxFailures int           // IDP_LOGIN_IP_MAX_FAILURES
	LoginLockout       time.Duration // IDP_LOGIN_LOCKOUT
	LoginMaxLockout    time.Duration // IDP_LOGIN_MAX_LOCKOUT

	// Password hashing: argon2id memory (KiB), iterations, parallel hashes.
	ArgonMemoryKiB     uint32 // IDP_ARGON2_MEMORY_KIB
	ArgonIterations    uint32 // IDP_ARGON2_ITERATIONS
	ArgonMaxConcurrent int    // IDP_ARGON2_MAX_CONCURRENT (0: one per CPU, within 64 MiB)

	BrandName    string // IDP_BRAND_NAME
	BrandColor   string // IDP_BRAND_COLOR
	BrandLogoURL string // IDP_BRAND_LOGO_URL
	// BrandsFile (IDP_BRANDS_FILE) is a JSON file of the looks of relying
	// party families; Load reads it into Brands.
	BrandsFile string
	Brands     []Brand

	// E-mail. Without an SMTP URL, mails are written to MailDir().
	SMTPURL          string        // IDP_SMTP_URL: smtp://user:pass@host:587[?starttls=required] or smtps://...
	MailFrom         string        // IDP_MAIL_FROM
	MailPoll         time.Duration // IDP_MAIL_POLL_INTERVAL: outbox reads without a nudge
	MailRetryBase    time.Duration // IDP_MAIL_RETRY_BASE: first retry delay (doubles, with jitter)
	MailRetryMax     time.Duration // IDP_MAIL_RETRY_MAX: cap on the retry delay
	MailKeep         time.Duration // IDP_MAIL_KEEP: how long the outbox keeps a mail (sent or not)
	PasswordResetTTL time.Duration // IDP_PASSWORD_RESET_TTL: how long a reset link works
	// Reset requests per e-mail address and per client IP before a pause
	// (IDP_RESET_LOCKOUT, doubling up to an hour).
	ResetMaxPerEmail int           // IDP_RESET_MAX_PER_EMAIL
	ResetMaxPerIP    int           // IDP_RESET_MAX_PER_IP
	ResetLockout     time.Duration // IDP_RESET_LOCKOUT

	// Warnings are what LoadEnviron found amiss without refusing it: IDP_
	// variables of the environment that are not settings (other programs may
	// set IDP_ variables, so these are not errors). The server logs them.
	Warnings []string
}

// Defaults returns the configuration with every default of the contract.
func Defaults() Config {
	return Config{
		Issuer:             "http://localhost:8080",
		Listen:             "127.0.0.1:8080",
		DatabaseURL:        "sqlite://./data/idp.db",
		SecretKeyFile:      "", // resolved in Load: ./data/secret.key for the embedded store
		TOTPIssuer:         "Camera ID",
		SessionIdleTimeout: 24 * time.Hour,
		SessionMaxAge:      30 * 24 * time.Hour,
		RememberMe:         30 * 24 * time.Hour,
		FlowLifetime:       15 * time.Minute,
		AccessTokenTTL:     time.Hour,
		IDTokenTTL:         time.Hour,
		RefreshTokenTTL:    30 * 24 * time.Hour,
		AuthCodeTTL:        5 * time.Minute,
		SigningAlg:         "RS256",
		LogLevel:           "info",
		MFAMaxFailures:     5,
		MFALockout:         time.Minute,
		MFAMaxLockout:      time.Hour,
		LoginMaxFailures:   10,
		LoginIPMaxFailures: 50,
		LoginLockout:       time.Minute,
		LoginMaxLockout:    time.Hour,
		ArgonMemoryKiB:     19456,
		ArgonIterations:    2,
		BrandName:          "",
		BrandColor:         "#0b5cad",
		MailFrom:           "Camera ID <no-reply@localhost>",
		MailPoll:           10 * time.Second,
		MailRetryBase:      30 * time.Second,
		MailRetryMax:       30 * time.Minute,
		MailKeep:           7 * 24 * time.Hour,
		PasswordResetTTL:   30 * time.Minute,
		ResetMaxPerEmail:   5,
		ResetMaxPerIP:      30,
		ResetLockout:       15 * time.Minute,
	}
}

// DefaultSecretKeyFile is where the embedded default keeps its master key.
const DefaultSecretKeyFile = "./data/secret.key"

// Load reads the configuration: defaults, then the KEY=VALUE lines of file
// (when file is not empty), then the environment, which wins. An IDP_ name
// in the file that is not a setting is an error. getenv cannot list the
// environment's names, so Load does not look for misspelt ones there:
// LoadEnviron does.
func Load(file string, getenv func(string) string) (Config, error) {
	if getenv == nil {
		getenv = os.Getenv
	}
	return load(file, getenv, nil)
}

// LoadEnviron is Load with the environment given as os.Environ gives it,
// KEY=VALUE strings, so that it can also see the IDP_ names set there that
// are not settings: each is a warning in Config.Warnings (IDP_CONFIG and
// IDP_TEST_* are not settings but expected).
func LoadEnviron(file string, environ []string) (Config, error) {
	vars := map[string]string{}
	var names []string
	for _, kv := range environ {
		k, v, _ := strings.Cut(kv, "=")
		if _, dup := vars[k]; !dup { // the first wins, as with os.Getenv
			vars[k] = v
			names = append(names, k)
		}
	}
	return load(file, func(k string) string { return vars[k] }, names)
}

func load(file string, getenv func(string) string, envNames []string) (Config, error) {
	vars := map[string]fileVar{}
	if file != "" {
		if err := readEnvFile(file, vars); err != nil {
			return Config{}, err
		}
	}
	get := func(k string) string {
		if v := getenv(k); v != "" {
			return v
		}
		return vars[k].value
	}
	c := Defaults()
	p := parser{get: get, read: map[string]bool{}}
	p.str(&c.Issuer, "IDP_ISSUER")
	p.str(&c.Listen, "IDP_LISTEN")
	p.str(&c.MetricsListen, "IDP_METRICS_LISTEN")
	p.str(&c.TrustedProxies, "IDP_TRUSTED_PROXIES")
	p.durOrZero(&c.ShutdownDrain, "IDP_SHUTDOWN_DRAIN")
	p.str(&c.DatabaseURL, "IDP_DATABASE_URL")
	p.str(&c.SecretKeyFile, "IDP_SECRET_KEY_FILE")
	p.str(&c.SecretKey, "IDP_SECRET_KEY")
	p.str(&c.TOTPIssuer, "IDP_TOTP_ISSUER")
	p.dur(&c.SessionIdleTimeout, "IDP_SESSION_IDLE_TIMEOUT")
	p.dur(&c.SessionMaxAge, "IDP_SESSION_MAX_AGE")
	p.dur(&c.RememberMe, "IDP_REMEMBER_ME_DURATION")
	p.dur(&c.FlowLifetime, "IDP_FLOW_LIFETIME")
	p.dur(&c.AccessTokenTTL, "IDP_ACCESS_TOKEN_TTL")
	p.dur(&c.IDTokenTTL, "IDP_ID_TOKEN_TTL")
	p.dur(&c.RefreshTokenTTL, "IDP_REFRESH_TOKEN_TTL")
	p.durOrZero(&c.RefreshTokenGrace, "IDP_REFRESH_TOKEN_GRACE")
	p.dur(&c.AuthCodeTTL, "IDP_AUTH_CODE_TTL")
	p.str(&c.SigningAlg, "IDP_SIGNING_ALG")
	p.str(&c.LogLevel, "IDP_LOG_LEVEL")
	p.int(&c.MFAMaxFailures, "IDP_MFA_MAX_FAILURES")
	p.dur(&c.MFALockout, "IDP_MFA_LOCKOUT")
	p.dur(&c.MFAMaxLockout, "IDP_MFA_MAX_LOCKOUT")
	p.int(&c.LoginMaxFailures, "IDP_LOGIN_MAX_FAILURES")
	p.int(&c.LoginIPMaxFailures, "IDP_LOGIN_IP_MAX_FAILURES")
	p.dur(&c.LoginLockout, "IDP_LOGIN_LOCKOUT")
	p.dur(&c.LoginMaxLockout, "IDP_LOGIN_MAX_LOCKOUT")
	p.u32(&c.ArgonMemoryKiB, "IDP_ARGON2_MEMORY_KIB")
	p.u32(&c.ArgonIterations, "IDP_ARGON2_ITERATIONS")
	p.int(&c.ArgonMaxConcurrent, "IDP_ARGON2_MAX_CONCURRENT")
	p.str(&c.BrandName, "IDP_BRAND_NAME")
	p.str(&c.BrandColor, "IDP_BRAND_COLOR")
	p.str(&c.BrandLogoURL, "IDP_BRAND_LOGO_URL")
	p.str(&c.BrandsFile, "IDP_BRANDS_FILE")
	p.str(&c.SMTPURL, "IDP_SMTP_URL")
	p.str(&c.MailFrom, "IDP_MAIL_FROM")
	p.dur(&c.MailPoll, "IDP_MAIL_POLL_INTERVAL")
	p.dur(&c.MailRetryBase, "IDP_MAIL_RETRY_BASE")
	p.dur(&c.MailRetryMax, "IDP_MAIL_RETRY_MAX")
	p.dur(&c.MailKeep, "IDP_MAIL_KEEP")
	p.dur(&c.PasswordResetTTL, "IDP_PASSWORD_RESET_TTL")
	p.int(&c.ResetMaxPerEmail, "IDP_RESET_MAX_PER_EMAIL")
	p.int(&c.ResetMaxPerIP, "IDP_RESET_MAX_PER_IP")
	p.dur(&c.ResetLockout, "IDP_RESET_LOCKOUT")
	// Every name a setting has has now been read: any other is a mistake.
	if err := unknownInFile(file, vars, &p); err != nil {
		return Config{}, err
	}
	if p.err != nil {
		return Config{}, p.err
	}
	slices.Sort(envNames)
	for _, k := range envNames {
		if ours(k) && !p.read[k] && k != "IDP_CONFIG" && !strings.HasPrefix(k, "IDP_TEST_") {
			c.Warnings = append(c.Warnings, fmt.Sprintf("%s is set in the environment but is not a setting%s; it is ignored", k, p.didYouMean(k)))
		}
	}
	if c.BrandsFile != "" {
		brands, err := ReadBrands(c.BrandsFile)
		if err != nil {
			return Config{}, err
		}
		c.Brands = brands
	}
	if c.SecretKeyFile == "" && c.SecretKey == "" && c.Embedded() {
		c.SecretKeyFile = DefaultSecretKeyFile
	}
	return c, c.Validate()
}

// MailDir is where mails go without IDP_SMTP_URL: "mail" in the data
// directory (the SQLite file's folder; ./data with PostgreSQL).
func (c Config) MailDir() string {
	if c.Embedded() {
		return filepath.Join(filepath.Dir(c.SQLitePath()), "mail")
	}
	return filepath.Join("data", "mail")
}

// Embedded reports whether the configuration uses the embedded SQLite store.
func (c Config) Embedded() bool { return strings.HasPrefix(c.DatabaseURL, "sqlite://") }

// SQLitePath is the file of the embedded store.
func (c Config) SQLitePath() string { return strings.TrimPrefix(c.DatabaseURL, "sqlite://") }

// Validate checks the values that would otherwise fail later and obscurely.
func (c Config) Validate() error {
	u, err := url.Parse(c.Issuer)
	if err != nil || u.Host == "" || strings.ContainsAny(c.Issuer, "?#") {
		return fmt.Errorf("IDP_ISSUER: %q is not an absolute URL without query or fragment", c.Issuer)
	}
	if !strings.HasPrefix(c.Issuer, u.Scheme+"://") {
		// url.Parse lowers the scheme; the issuer is compared as written
		// (Secure, and every relying party checking "iss").
		return fmt.Errorf("IDP_ISSUER: %q: write the scheme in lower case", c.Issuer)
	}
	switch u.Scheme {
	case "https":
	case "http":
		if !isLoopback(u.Hostname()) {
			return fmt.Errorf("IDP_ISSUER: %q: plain http is allowed only for localhost; use https", c.Issuer)
		}
	default:
		return fmt.Errorf("IDP_ISSUER: %q: scheme must be https (or http for localhost)", c.Issuer)
	}
	if (u.Path != "" && u.Path != "/") || u.RawPath != "" || u.User != nil {
		// The routes are at the root: discovery would name endpoints under
		// the path that answer 404, and the pages' redirects would drop it.
		return fmt.Errorf("IDP_ISSUER: %q: must be a scheme and host (and port) only, without a path", c.Issuer)
	}
	switch {
	case c.Embedded():
		if c.SQLitePath() == "" {
			return errors.New("IDP_DATABASE_URL: sqlite:// needs a file path, e.g. sqlite://./data/idp.db")
		}
	case strings.HasPrefix(c.DatabaseURL, "postgres://"), strings.HasPrefix(c.DatabaseURL, "postgresql://"):
		if c.SecretKeyFile == "" && c.SecretKey == "" {
			return errors.New("IDP_SECRET_KEY_FILE or IDP_SECRET_KEY is required with PostgreSQL (it is never generated)")
		}
	default:
		return fmt.Errorf("IDP_DATABASE_URL: %q: want sqlite://PATH or postgres://URL", redactURL(c.DatabaseURL))
	}
	switch c.SigningAlg {
	case "RS256", "ES256":
	default:
		return fmt.Errorf("IDP_SIGNING_ALG: %q: want RS256 or ES256", c.SigningAlg)
	}
	switch strings.ToLower(c.LogLevel) {
	case "debug", "info", "warn", "error":
	default:
		return fmt.Errorf("IDP_LOG_LEVEL: %q: want debug, info, warn or error", c.LogLevel)
	}
	if c.MetricsListen != "" {
		if _, _, err := net.SplitHostPort(c.MetricsListen); err != nil {
			return fmt.Errorf("IDP_METRICS_LISTEN: %q is not host:port (e.g. 127.0.0.1:9100)", c.MetricsListen)
		}
		if c.MetricsListen == c.Listen {
			return errors.New("IDP_METRICS_LISTEN must differ from IDP_LISTEN: metrics are not served on the public listener")
		}
	}
	if _, err := c.TrustedProxyPrefixes(); err != nil {
		return err
	}
	if c.MFAMaxFailures < 1 || c.LoginMaxFailures < 1 || c.LoginIPMaxFailures < 1 {
		return errors.New("failure limits must be at least 1")
	}
	if c.SMTPURL != "" {
		u, err := url.Parse(c.SMTPURL)
		if err != nil || (u.Scheme != "smtp" && u.Scheme != "smtps") || u.Hostname() == "" {
			return fmt.Errorf("IDP_SMTP_URL: %q: want smtp://[user:pass@]host:port or smtps://host:465", redactURL(c.SMTPURL))
		}
	}
	if _, err := mail.ParseAddress(c.MailFrom); err != nil {
		return fmt.Errorf("IDP_MAIL_FROM: %q is not an e-mail address", c.MailFrom)
	}
	// The otpauth:// label is issuer:account: apps split it at the colon.
	if strings.TrimSpace(c.TOTPIssuer) == "" || strings.Contains(c.TOTPIssuer, ":") {
		return fmt.Errorf("IDP_TOTP_ISSUER: %q: want a name without a colon (authenticator apps read the issuer up to the first colon)", c.TOTPIssuer)
	}
	if c.PasswordResetTTL < time.Minute || c.ResetMaxPerEmail < 1 || c.ResetMaxPerIP < 1 {
		return errors.New("IDP_PASSWORD_RESET_TTL must be at least 1m, and the reset limits at least 1")
	}
	if err := checkArgon(c); err != nil {
		return err
	}
	if c.ShutdownDrain > maxShutdownDrain {
		return fmt.Errorf("IDP_SHUTDOWN_DRAIN: %s: must be at most %s (a balancer notices a failing /readyz within seconds, and a process manager stops waiting long before)",
			c.ShutdownDrain, maxShutdownDrain)
	}
	if c.RefreshTokenGrace > maxRefreshTokenGrace {
		return fmt.Errorf("IDP_REFRESH_TOKEN_GRACE: %s: must be at most %s (it is for a retry of a refresh whose answer was lost)",
			c.RefreshTokenGrace, maxRefreshTokenGrace)
	}
	if err := checkBrand(c); err != nil {
		return err
	}
	return nil
}

// maxRefreshTokenGrace bounds IDP_REFRESH_TOKEN_GRACE, as Ory Hydra bounds
// its rotation grace period: a spent refresh token that works for long is a
// stolen one's chance.
const maxRefreshTokenGrace = 5 * time.Minute

// maxShutdownDrain bounds IDP_SHUTDOWN_DRAIN: a slip (10m for 10s) would
// keep an instance that was told to stop serving for that long.
const maxShutdownDrain = 5 * time.Minute

// checkArgon keeps the argon2id costs within bounds, so that a slip (a
// value in bytes instead of KiB, a zero too many) cannot make every login
// allocate gigabytes or hash for minutes: each hash takes at most
// password.MaxMemoryKiB (4 GiB), and so do the hashes that run at once
// (IDP_ARGON2_MAX_CONCURRENT of them; the default of one per CPU already
// keeps within 64 MiB, or one hash).
func checkArgon(c Config) error {
	const maxMiB = password.MaxMemoryKiB >> 10
	switch {
	case c.ArgonMemoryKiB < 8192:
		return fmt.Errorf("IDP_ARGON2_MEMORY_KIB: %d: must be at least 8192", c.ArgonMemoryKiB)
	case c.ArgonMemoryKiB > password.MaxMemoryKiB:
		return fmt.Errorf("IDP_ARGON2_MEMORY_KIB: %d KiB (%d MiB): must be at most %d (%d MiB) per hash; the value is in KiB (OWASP's 19 MiB is 19456)",
			c.ArgonMemoryKiB, c.ArgonMemoryKiB>>10, password.MaxMemoryKiB, maxMiB)
	case c.ArgonIterations < 1:
		return errors.New("IDP_ARGON2_ITERATIONS: must be at least 1")
	case c.ArgonIterations > password.MaxIterations:
		return fmt.Errorf("IDP_ARGON2_ITERATIONS: %d: must be at most %d (OWASP's choice is 2)", c.ArgonIterations, password.MaxIterations)
	case c.ArgonMaxConcurrent > password.MaxMemoryKiB/int(c.ArgonMemoryKiB):
		return fmt.Errorf("IDP_ARGON2_MAX_CONCURRENT: %d: must be at most %d with IDP_ARGON2_MEMORY_KIB=%d, so that the hashes running at once take at most %d MiB",
			c.ArgonMaxConcurrent, password.MaxMemoryKiB/int(c.ArgonMemoryKiB), c.ArgonMemoryKiB, maxMiB)
	}
	return nil
}

// TrustedProxyPrefixes parses IDP_TRUSTED_PROXIES: IP addresses or CIDR
// prefixes, separated by commas.
func (c Config) TrustedProxyPrefixes() ([]netip.Prefix, error) {
	var out []netip.Prefix
	for _, f := range strings.Split(c.TrustedProxies, ",") {
		f = strings.TrimSpace(f)
		if f == "" {
			continue
		}
		if strings.Contains(f, "/") {
			p, err := netip.ParsePrefix(f)
			if err != nil {
				return nil, fmt.Errorf("IDP_TRUSTED_PROXIES: %q is not an IP address or CIDR prefix", f)
			}
			out = append(out, p.Masked())
			continue
		}
		a, err := netip.ParseAddr(f)
		if err != nil {
			return nil, fmt.Errorf("IDP_TRUSTED_PROXIES: %q is not an IP address or CIDR prefix", f)
		}
		out = append(out, netip.PrefixFrom(a.Unmap(), a.Unmap().BitLen()))
	}
	return out, nil
}

// checkBrand keeps the branding safe to put into a style sheet and an
// <img>: the colour is #rrggbb only, dark enough for white button text and
// links on white (WCAG AA, 4.5:1), and the logo a same-origin path or an
// https URL (what the pages' Content-Security-Policy lets through). The
// same holds for each brand of IDP_BRANDS_FILE, and each relying party
// belongs to one brand at most.
func checkBrand(c Config) error {
	if err := checkLook("IDP_BRAND_COLOR", c.BrandColor, "IDP_BRAND_LOGO_URL", c.BrandLogoURL); err != nil {
		return err
	}
	ids, clients := map[string]bool{}, map[string]string{}
	for i, b := range c.Brands {
		where := fmt.Sprintf("IDP_BRANDS_FILE: brand %d", i+1)
		if !brandID.MatchString(b.ID) {
			return fmt.Errorf("%s: id %q: want 1-32 of a-z, 0-9 and -", where, b.ID)
		}
		where = fmt.Sprintf("IDP_BRANDS_FILE: brand %q", b.ID)
		if ids[b.ID] {
			return fmt.Errorf("%s: the id is used twice", where)
		}
		ids[b.ID] = true
		if strings.TrimSpace(b.Name) == "" || len(b.Clients) == 0 {
			return fmt.Errorf("%s: needs a name and at least one client", where)
		}
		if err := checkLook(where+": color", b.Color, where+": logo_url", b.LogoURL); err != nil {
			return err
		}
		for _, id := range b.Clients {
			if other, ok := clients[id]; ok {
				return fmt.Errorf("%s: client %q is already in brand %q", where, id, other)
			}
			clients[id] = b.ID
		}
	}
	return nil
}

var brandID = regexp.MustCompile(`^[a-z0-9-]{1,32}$`)

// checkLook checks a colour and a logo URL (either may be empty); the names
// say where they came from.
func checkLook(colorName, color, logoName, logo string) error {
	if color != "" {
		r, g, b, ok := ParseHexColor(color)
		if !ok {
			return fmt.Errorf("%s: %q: want a colour as #rrggbb, e.g. #0b5cad", colorName, color)
		}
		if ratio := ContrastOnWhite(r, g, b); ratio < 4.5 {
			return fmt.Errorf("%s: %q has a contrast of %.1f:1 with white; buttons and links need at least 4.5:1 (choose a darker colour)", colorName, color, ratio)
		}
	}
	if logo != "" {
		u, err := url.Parse(logo)
		ok := err == nil && u.Fragment == "" && !strings.ContainsAny(logo, " \t\r\n\"'<>\\") &&
			((u.Scheme == "https" && u.Host != "") ||
				(u.Scheme == "" && u.Host == "" && strings.HasPrefix(logo, "/") && !strings.HasPrefix(logo, "//")))
		if !ok {
			return fmt.Errorf("%s: %q: want a path on this server (/...) or an https:// URL", logoName, logo)
		}
	}
	return nil
}

// Brand is the look of the pages that a family of relying parties (its
// Clients, by client id) shows during their logins: product name, logo,
// colour. An empty colour or logo falls back to IDP_BRAND_*.
type Brand struct {
	ID      string   `json:"id"`
	Name    string   `json:"name"`
	LogoURL string   `json:"logo_url,omitempty"`
	Color   string   `json:"color,omitempty"`
	Clients []string `json:"clients"`
}

// ReadBrands reads IDP_BRANDS_FILE: a JSON array of brands. Unknown fields
// are refused, so a misspelt one is not silently ignored.
func ReadBrands(path string) ([]Brand, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("IDP_BRANDS_FILE: %w", err)
	}
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	var brands []Brand
	if err := dec.Decode(&brands); err != nil {
		return nil, fmt.Errorf("IDP_BRANDS_FILE: %s: %w", path, err)
	}
	if dec.More() {
		return nil, fmt.Errorf("IDP_BRANDS_FILE: %s: more than one JSON value", path)
	}
	return brands, nil
}

// ParseHexColor parses "#rrggbb" (either letter case).
func ParseHexColor(s string) (r, g, b uint8, ok bool) {
	if len(s) != 7 || s[0] != '#' {
		return 0, 0, 0, false
	}
	var v [3]uint8
	for i := range 3 {
		hi, ok1 := hexDigit(s[1+2*i])
		lo, ok2 := hexDigit(s[2+2*i])
		if !ok1 || !ok2 {
			return 0, 0, 0, false
		}
		v[i] = hi<<4 | lo
	}
	return v[0], v[1], v[2], true
}

func hexDigit(c byte) (uint8, bool) {
	switch {
	case c >= '0' && c <= '9':
		return c - '0', true
	case c >= 'a' && c <= 'f':
		return c - 'a' + 10, true
	case c >= 'A' && c <= 'F':
		return c - 'A' + 10, true
	}
	return 0, false
}

// ContrastOnWhite is the WCAG 2 contrast ratio of an sRGB colour with white.
func ContrastOnWhite(r, g, b uint8) float64 {
	lin := func(c uint8) float64 {
		v := float64(c) / 255
		if v <= 0.04045 {
			return v / 12.92
		}
		return math.Pow((v+0.055)/1.055, 2.4)
	}
	l := 0.2126*lin(r) + 0.7152*lin(g) + 0.0722*lin(b)
	return 1.05 / (l + 0.05)
}

// BaseURL is the issuer without the slash it may end with (as Ory Hydra's
// does, and OpenID Connect allows): what the provider's own URLs are built
// on. The issuer itself, slash and all, is what tokens and discovery say.
func (c Config) BaseURL() string { return strings.TrimSuffix(c.Issuer, "/") }

// Secure reports whether the issuer is https (cookies get Secure, HSTS is sent).
func (c Config) Secure() bool { return strings.HasPrefix(c.Issuer, "https://") }

func isLoopback(host string) bool {
	if host == "localhost" || strings.HasSuffix(host, ".localhost") {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// redactURL hides a password in a database URL before it reaches a message.
func redactURL(s string) string {
	u, err := url.Parse(s)
	if err != nil || u.User == nil {
		// Not a URL with user info as written (a mistyped scheme, say):
		// whatever stands before an "@" may still be a password.
		if i := strings.LastIndex(s, "@"); i >= 0 {
			return "xxxxx" + s[i:]
		}
		return s
	}
	if _, ok := u.User.Password(); ok {
		u.User = url.UserPassword(u.User.Username(), "xxxxx")
	}
	return u.String()
}

// unknownInFile refuses the IDP_ names of the file that the parser p has
// not read, naming each with its line (and the setting it may be meant as).
func unknownInFile(file string, vars map[string]fileVar, p *parser) error {
	var bad []string
	for k := range vars {
		if ours(k) && !p.read[k] {
			bad = append(bad, k)
		}
	}
	if len(bad) == 0 {
		return nil
	}
	slices.SortFunc(bad, func(a, b string) int { return vars[a].line - vars[b].line })
	msgs := make([]string, len(bad))
	for i, k := range bad {
		msgs[i] = fmt.Sprintf("config file %s:%d: %s is not a setting%s", file, vars[k].line, k, p.didYouMean(k))
	}
	return errors.New(strings.Join(msgs, "; "))
}

// ours reports whether name is in the provider's namespace (in any case:
// idp_issuer is a mistake for IDP_ISSUER, not somebody else's variable).
func ours(name string) bool { return strings.HasPrefix(strings.ToUpper(name), "IDP_") }

// parser reads the settings; read records each name asked for, so that the
// calls in Load are the one list of the settings' names.
type parser struct {
	get   func(string) string
	read  map[string]bool
	names []string // read, in the order of the calls
	err   error
}

func (p *parser) value(key string) string {
	if !p.read[key] {
		p.read[key] = true
		p.names = append(p.names, key)
	}
	return strings.TrimSpace(p.get(key))
}

// didYouMean is " (did you mean NAME?)" for the setting closest to an
// unknown name, when it is close enough to be a likely slip; else "".
func (p *parser) didYouMean(name string) string {
	name = strings.ToUpper(name)
	best, bestD := "", 0
	for _, k := range p.names {
		if d := editDistance(name, k); best == "" || d < bestD {
			best, bestD = k, d
		}
	}
	if best == "" || bestD > 3 || 3*bestD > len(name)-len("IDP_") {
		return ""
	}
	return " (did you mean " + best + "?)"
}

// editDistance is the Levenshtein distance between a and b (bytes).
func editDistance(a, b string) int {
	prev, cur := make([]int, len(b)+1), make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev, cur = cur, prev
	}
	return prev[len(b)]
}

func (p *parser) str(dst *string, key string) {
	if v := p.value(key); v != "" {
		*dst = v
	}
}

func (p *parser) dur(dst *time.Duration, key string) { p.duration(dst, key, false) }

// durOrZero is dur for a setting where 0 means none.
func (p *parser) durOrZero(dst *time.Duration, key string) { p.duration(dst, key, true) }

// duration reads a duration of at least a second (the store keeps times
// to the second, and a shorter one is a slip: 15ms for 15m would break
// every login), or 0 where zeroOK.
func (p *parser) duration(dst *time.Duration, key string, zeroOK bool) {
	v := p.value(key)
	if v == "" || p.err != nil {
		return
	}
	d, err := time.ParseDuration(v)
	switch {
	case err == nil && (d >= time.Second || d == 0 && zeroOK):
		*dst = d
	case err == nil && d > 0:
		hint := ""
		if m, ok := strings.CutSuffix(v, "ms"); ok {
			hint = " (" + m + "m?)"
		}
		p.err = fmt.Errorf("%s: %q is under a second%s", key, v, hint)
	case zeroOK:
		p.err = fmt.Errorf("%s: %q is not a duration like 10s, or 0 for none", key, v)
	default:
		p.err = fmt.Errorf("%s: %q is not a positive duration like 15m or 24h", key, v)
	}
}

func (p *parser) int(dst *int, key string) {
	v := p.value(key)
	if v == "" || p.err != nil {
		return
	}
	n, err := strconv.Atoi(v)
	if err != nil || n < 0 {
		p.err = fmt.Errorf("%s: %q is not a non-negative whole number", key, v)
		return
	}
	*dst = n
}

// u32 sets every value it parses, 0 included: the bounds are Validate's.
func (p *parser) u32(dst *uint32, key string) {
	v := p.value(key)
	if v == "" || p.err != nil {
		return
	}
	n, err := strconv.ParseUint(v, 10, 32)
	if err != nil {
		p.err = fmt.Errorf("%s: %q is not a whole number from 0 to %d", key, v, uint32(math.MaxUint32))
		return
	}
	*dst = uint32(n)
}

// readEnvFile reads an IDP_CONFIG file: KEY=VALUE lines (a shell's
// "export KEY=VALUE" too), # comments and blank lines; anything else is an
// error naming its line. A value may be quoted (envValue).
func readEnvFile(path string, into map[string]fileVar) error {
	f, err := os.Open(path)
	if err != nil {
		return fmt.Errorf("config file: %w", err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		if rest, ok := strings.CutPrefix(line, "export"); ok && rest != "" && (rest[0] == ' ' || rest[0] == '\t') {
			line = strings.TrimSpace(rest)
		}
		k, v, ok := strings.Cut(line, "=")
		k = strings.TrimSpace(k)
		if !ok || !envName.MatchString(k) {
			return fmt.Errorf("config file %s:%d: want KEY=VALUE, a # comment or a blank line", path, n)
		}
		v, err := envValue(v)
		if err != nil {
			return fmt.Errorf("config file %s:%d: %s: %w", path, n, k, err)
		}
		into[k] = fileVar{value: v, line: n}
	}
	if err := sc.Err(); err != nil {
		return fmt.Errorf("config file %s: %w", path, err)
	}
	return nil
}

// envValue is the value of a file's KEY=VALUE line, v (what follows the
// =). Quoted ('...' or "..."), it is what the quotes hold, as written, and
// only white space, or white space and a # comment, may follow. Unquoted,
// a # after white space (KEY=value # note, KEY= # note) is refused: a
// shell sourcing the file takes it for a comment and a reader might too,
// while a value cut there (a password, say), or one holding the comment,
// must not pass unnoticed. The comment goes on a line of its own, or the
// value in quotes. A # right after the = or within a word (#0b5cad,
// pass#word) is part of the value, as for a shell.
func envValue(v string) (string, error) {
	t := strings.TrimSpace(v)
	if t != "" && (t[0] == '"' || t[0] == '\'') {
		end := strings.IndexByte(t[1:], t[0])
		if end < 0 {
			return "", fmt.Errorf("the value's %c quote is not closed", t[0])
		}
		rest := t[end+2:]
		if r := strings.TrimSpace(rest); r != "" && (r[0] != '#' || r == rest) {
			return "", fmt.Errorf("%q after the value's closing quote (a comment starts with white space and #)", r)
		}
		return t[1 : end+1], nil
	}
	if commentAfterSpace.MatchString(v) {
		return "", errors.New("a # after a space in the value: put the comment on a line of its own, or quote the value")
	}
	return t, nil
}

// commentAfterSpace is where a shell's comment would start in an unquoted
// value.
var commentAfterSpace = regexp.MustCompile(`[ \t]#`)

// fileVar is a value of an IDP_CONFIG file and the line it is on.
type fileVar struct {
	value string
	line  int
}

var envName = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*$`)
