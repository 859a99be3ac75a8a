package app

import (
	"context"
	"errors"
	"fmt"
	netmail "net/mail"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/kamera-id/idp/idp/crypt"
	"github.com/kamera-id/idp/idp/mail"
	"github.com/kamera-id/idp/idp/store"
)

// NewUser describes an account to create.
type NewUser struct {
	Email    string
	Name     string
	Locale   string
	Password string
}

// Password rules (NIST SP 800-63B: length, not composition).
const (
	MinPasswordLen = 8
	MaxPasswordLen = 128
)

// CheckPassword applies the password rules.
func CheckPassword(pw string) error {
	n := utf8.RuneCountInString(pw)
	switch {
	case !utf8.ValidString(pw):
		return errors.New("password is not valid UTF-8")
	case n < MinPasswordLen:
		return fmt.Errorf("password must be at least %d characters", MinPasswordLen)
	case n > MaxPasswordLen:
		return fmt.Errorf("password must be at most %d characters", MaxPasswordLen)
	}
	return nil
}

// maxNameLen bounds a user's or client's name (characters).
const maxNameLen = 200

// checkText refuses a name that is not valid UTF-8 (PostgreSQL would
// refuse it with an error of its own), has control characters (a name
// goes into ID tokens, pages and terminals) or is longer than max
// characters.
func checkText(what, v string, max int) error {
	switch {
	case !utf8.ValidString(v):
		return fmt.Errorf("%s %q: not valid UTF-8", what, v)
	case strings.IndexFunc(v, unicode.IsControl) >= 0:
		return fmt.Errorf("%s %q: must not contain control characters", what, v)
	case utf8.RuneCountInString(v) > max:
		return fmt.Errorf("%s: at most %d characters", what, max)
	}
	return nil
}

// Check reports what is wrong with nu, before any store is opened (an
// admin command changes nothing on failure, not even a new store).
func (nu NewUser) Check() error {
	email := strings.TrimSpace(nu.Email)
	addr, err := netmail.ParseAddress(email)
	if err != nil || addr.Address != email || len(email) > 254 {
		return fmt.Errorf("invalid e-mail address %q", nu.Email)
	}
	if err := CheckPassword(nu.Password); err != nil {
		return err
	}
	if err := checkText("name", nu.Name, maxNameLen); err != nil {
		return err
	}
	switch nu.Locale {
	case "", "ja", "en":
	default:
		return fmt.Errorf("locale %q: want ja or en", nu.Locale)
	}
	return nil
}

// CreateUser validates (Check) and stores a new account.
func (a *App) CreateUser(ctx context.Context, nu NewUser) (*store.User, error) {
	if err := nu.Check(); err != nil {
		return nil, err
	}
	email := strings.TrimSpace(nu.Email)
	hash, err := a.Hasher.Hash(ctx, nu.Password)
	if err != nil {
		return nil, err
	}
	now := a.Now().Truncate(1e9)
	u := &store.User{
		ID: crypt.RandomToken(16), Email: email, Name: strings.TrimSpace(nu.Name), Locale: nu.Locale,
		PasswordHash: hash, CreatedAt: now, UpdatedAt: now,
	}
	if err := a.Store.CreateUser(ctx, u); err != nil {
		if errors.Is(err, store.ErrDuplicate) {
			return nil, fmt.Errorf("a user with e-mail %s already exists", email)
		}
		return nil, err
	}
	return u, nil
}

// ClientChange is what UpdateClient changes of a client: each field that
// is set (nil: unchanged). A list replaces the whole list.
type ClientChange struct {
	Name                   *string
	RedirectURIs           []string
	PostLogoutRedirectURIs []string
	FirstParty             *bool
}

// Check reports what is wrong with ch by itself, before any store is
// opened: a name, the URIs given (that a client keeps one redirect URI is
// checked against the client: UpdateClient).
func (ch ClientChange) Check() error {
	if ch.Name != nil {
		if err := checkText("client name", *ch.Name, maxNameLen); err != nil {
			return err
		}
		if strings.TrimSpace(*ch.Name) == "" {
			return errors.New("client name cannot be empty")
		}
	}
	return checkURIs(ch.RedirectURIs, ch.PostLogoutRedirectURIs)
}

// UpdateClient changes the client id as ch says and returns it: at once in
// this process, within the client cache's lifetime (5 s) on running
// servers. Its secret, consents and tokens stay.
func (a *App) UpdateClient(ctx context.Context, id string, ch ClientChange) (*store.Client, error) {
	c, err := a.Store.GetClient(ctx, id)
	if err != nil {
		return nil, clientErr(id, err)
	}
	if err := ch.Check(); err != nil {
		return nil, err
	}
	if ch.Name != nil {
		c.Name = strings.TrimSpace(*ch.Name)
	}
	if ch.RedirectURIs != nil {
		c.RedirectURIs = ch.RedirectURIs
	}
	if ch.PostLogoutRedirectURIs != nil {
		c.PostLogoutRedirectURIs = ch.PostLogoutRedirectURIs
	}
	if ch.FirstParty != nil {
		c.FirstParty = *ch.FirstParty
	}
	if err := validateClientURIs(c.RedirectURIs, c.PostLogoutRedirectURIs); err != nil {
		return nil, err
	}
	if err := a.Store.UpdateClient(ctx, c); err != nil {
		return nil, clientErr(id, err) // not found: deleted meanwhile
	}
	a.forgetClient(id)
	return c, nil
}

// validateClientURIs checks a client's redirect URIs (at least one) and
// post-logout redirect URIs.
func validateClientURIs(redirects, postLogout []string) error {
	if len(redirects) == 0 {
		return errors.New("at least one --redirect-uri is required")
	}
	return checkURIs(redirects, postLogout)
}

// checkURIs checks each redirect URI and post-logout redirect URI.
func checkURIs(redirects, postLogout []string) error {
	for _, u := range redirects {
		if err := ValidateRedirectURI(u); err != nil {
			return err
		}
	}
	for _, u := range postLogout {
		if err := ValidateRedirectURI(u); err != nil {
			return fmt.Errorf("post-logout %w", err)
		}
	}
	return nil
}

// NewClient describes a relying party to register.
type NewClient struct {
	ID                     string
	Name                   string
	RedirectURIs           []string
	PostLogoutRedirectURIs []string
	Public                 bool
	FirstParty             bool
}

// Check reports what is wrong with nc, before any store is opened.
func (nc NewClient) Check() error {
	id := strings.TrimSpace(nc.ID)
	if id == "" || len(id) > 128 || strings.IndexFunc(id, func(r rune) bool { return r <= ' ' || r > '~' || r == ':' }) >= 0 {
		return fmt.Errorf("client id %q: want 1-128 printable ASCII characters without spaces or colons", nc.ID)
	}
	if err := checkText("client name", nc.Name, maxNameLen); err != nil {
		return err
	}
	if strings.TrimSpace(nc.Name) == "" {
		return errors.New("client name is required")
	}
	return validateClientURIs(nc.RedirectURIs, nc.PostLogoutRedirectURIs)
}

// CreateClient registers a relying party and returns its secret (empty for
// public clients). The secret has 256 bits of entropy and is stored only as
// a keyed hash.
func (a *App) CreateClient(ctx context.Context, nc NewClient) (*store.Client, string, error) {
	if err := nc.Check(); err != nil {
		return nil, "", err
	}
	id := strings.TrimSpace(nc.ID)
	c := &store.Client{
		ID: id, Name: strings.TrimSpace(nc.Name), RedirectURIs: nc.RedirectURIs,
		PostLogoutRedirectURIs: nc.PostLogoutRedirectURIs, Public: nc.Public, FirstParty: nc.FirstParty,
		CreatedAt: a.Now().Truncate(1e9),
	}
	var secret string
	if !nc.Public {
		secret, c.SecretHash = a.newClientSecret(ctx)
	}
	if err := a.Store.CreateClient(ctx, c); err != nil {
		if errors.Is(err, store.ErrDuplicate) {
			return nil, "", fmt.Errorf("a client with id %s already exists", id)
		}
		return nil, "", err
	}
	return c, secret, nil
}

// MaxKeepOldSecret bounds how long a rotated-out client secret is taken.
const MaxKeepOldSecret = 30 * 24 * time.Hour

// RotateClientSecret gives the confidential client id a new secret, which
// it returns. Every server takes the new secret at once (a secret that does
// not match a cached client reads it again). The old one is still taken for
// keepOld, so that the relying party's instances can switch one by one
// (Keycloak's rotated secret); with none, it stops working at once in this
// process and within the client cache's lifetime (5 s) on running servers.
// A later rotation ends the old one's grace. Tokens already issued stay
// valid; refreshing one needs a secret that is taken.
func (a *App) RotateClientSecret(ctx context.Context, id string, keepOld time.Duration) (secret string, oldUntil time.Time, err error) {
	if keepOld < 0 || keepOld > MaxKeepOldSecret {
		return "", time.Time{}, fmt.Errorf("--keep-old %s: want 0 to %s", keepOld, MaxKeepOldSecret)
	}
	c, err := a.Store.GetClient(ctx, id)
	if err != nil {
		return "", time.Time{}, clientErr(id, err)
	}
	if c.Public {
		return "", time.Time{}, fmt.Errorf("client %s is public: it has no secret", id)
	}
	if keepOld > 0 {
		// The real clock, not a.Now: the token endpoint checks it against
		// the real clock, as fosite checks every time it keeps.
		oldUntil = time.Now().Add(keepOld).Truncate(time.Second)
	}
	secret, hash := a.newClientSecret(ctx)
	if err := a.Store.SetClientSecret(ctx, id, hash, oldUntil); err != nil {
		return "", time.Time{}, clientErr(id, err) // not found: deleted meanwhile
	}
	a.forgetClient(id)
	return secret, oldUntil, nil
}

// DeleteClient removes the client id with its consents and tokens; running
// servers refuse it within the client cache's lifetime (5 s).
func (a *App) DeleteClient(ctx context.Context, id string) error {
	if err := a.Store.DeleteClient(ctx, id); err != nil {
		return clientErr(id, err)
	}
	a.forgetClient(id)
	return nil
}

// forgetClient drops the client id from this process's client cache.
func (a *App) forgetClient(id string) {
	if a.Provider != nil {
		a.Provider.Storage.ForgetClient(id)
	}
}

// SetUserDisabled is the support desk's path to lock an account out (a
// stolen or abused account, a customer who left), or to let it in again
// (disabled false). Disabling ends every session of the user with its
// tokens, deactivates every other token issued to the user, ends logins
// half-way (a new security stamp) and records an audit event, or does none
// of it; a disabled account's right password gets a page saying it is
// disabled, and its address no reset link. Nothing changes (and nothing is
// recorded) when the account already is as asked.
func (a *App) SetUserDisabled(ctx context.Context, email string, disabled bool) (*store.User, error) {
	u, err := a.UserByEmail(ctx, email)
	if err != nil {
		return nil, err
	}
	tx, err := a.Store.BeginTx(ctx)
	if err != nil {
		return nil, err
	}
	defer func() { _ = a.Store.Rollback(tx) }()
	at, event := time.Time{}, "user.enabled"
	if disabled {
		at, event = a.Now().Truncate(time.Second), "user.disabled"
	}
	changed, err := a.Store.SetUserDisabled(tx, u.ID, at)
	if err != nil {
		if errors.Is(err, store.ErrNotFound) {
			return nil, fmt.Errorf("no user with e-mail %s", email) // deleted meanwhile
		}
		return nil, err
	}
	if !changed { // already as asked: say how it is now
		_ = a.Store.Rollback(tx)
		return a.UserByEmail(ctx, email)
	}
	if err := a.Store.AddAuditEvent(tx, &store.AuditEvent{
		UserID: u.ID, Type: event, Detail: `{"by":"support"}`, CreatedAt: a.Now(),
	}); err != nil {
		return nil, err
	}
	if err := a.Store.Commit(tx); err != nil {
		return nil, err
	}
	u.DisabledAt = at
	return u, nil
}

// DeleteUser removes the account with the address email and everything
// kept of it (see store.Store.DeleteUser): a customer who asked for the
// account to be deleted. Its sessions and tokens stop working at once; the
// address may sign up again as a new account (another sub).
func (a *App) DeleteUser(ctx context.Context, email string) (*store.User, error) {
	u, err := a.UserByEmail(ctx, email)
	if err != nil {
		return nil, err
	}
	if err := a.Store.DeleteUser(ctx, u.ID); err != nil {
		if errors.Is(err, store.ErrNotFound) {
			return nil, fmt.Errorf("no user with e-mail %s", email) // deleted meanwhile
		}
		return nil, err
	}
	return u, nil
}

// UserByEmail is the account with the address email, for a command that
// names it: a one-line error for an address without one.
func (a *App) UserByEmail(ctx context.Context, email string) (*store.User, error) {
	u, err := a.Store.GetUserByEmail(ctx, email)
	if errors.Is(err, store.ErrNotFound) {
		return nil, fmt.Errorf("no user with e-mail %s", email)
	}
	return u, err
}

// ResetMFA is the support desk's path for a user who lost both the
// authenticator and the backup codes. reset is false, and nothing was done
// (no session ended, nothing recorded or mailed), when the user had no
// two-step verification: what was asked for already holds.
func (a *App) ResetMFA(ctx context.Context, email string) (u *store.User, reset bool, err error) {
	u, err = a.UserByEmail(ctx, email)
	if err != nil {
		return nil, false, err
	}
	// The reset, the end of the user's sessions, its audit event and the
	// notice to the user, or none of them.
	tx, err := a.Store.BeginTx(ctx)
	if err != nil {
		return nil, false, err
	}
	defer func() { _ = a.Store.Rollback(tx) }()
	if err := a.Store.DeleteMFA(tx, u.ID); err != nil {
		if errors.Is(err, store.ErrNotFound) {
			return u, false, nil
		}
		return nil, false, err
	}
	// The lost authenticator is often the lost phone, signed in to the
	// account and its apps: every session ends, with its tokens.
	if _, err := a.Store.DeleteUserSessions(tx, u.ID, ""); err != nil {
		return nil, false, err
	}
	if err := a.Store.AddAuditEvent(tx, &store.AuditEvent{
		UserID: u.ID, Type: "mfa.reset", Detail: `{"by":"support"}`, CreatedAt: a.Now(),
	}); err != nil {
		return nil, false, err
	}
	if err := a.Outbox.Enqueue(tx, u.Email, mail.Compose(mail.MFAReset, mail.Notice{
		Lang: u.Locale, Product: a.Config.BrandName, When: a.Now(), AccountURL: a.Config.BaseURL() + "/account",
	})); err != nil {
		return nil, false, fmt.Errorf("2FA not reset: its notice e-mail could not be queued: %w", err)
	}
	if err := a.Store.Commit(tx); err != nil {
		return nil, false, err
	}
	return u, true, nil
}

// clientErr is err of a call about the client id: a one-line "no client"
// when the store has none.
func clientErr(id string, err error) error {
	if errors.Is(err, store.ErrNotFound) {
		return fmt.Errorf("no client with id %s", id)
	}
	return err
}

// newClientSecret is a new client secret, 256 random bits, and its keyed
// hash for the store.
func (a *App) newClientSecret(ctx context.Context) (secret string, hash []byte) {
	secret = crypt.RandomToken(32)
	hash, _ = SecretHasher{Key: a.Key}.Hash(ctx, []byte(secret))
	return secret, hash
}
