// Package store defines the identity provider's domain records and the one
// storage interface that every backend (the embedded SQLite default and
// PostgreSQL) implements. The conformance suite in package storetest holds
// both backends to the same behaviour.
//
// Conventions shared by every method:
//   - Times are stored with one-second resolution; a zero time.Time means
//     "not set" (never used, never expires, ...).
//   - Methods that decide whether something has expired take the caller's
//     now, so tests can move the clock.
//   - Secrets never reach the store in plain text: callers pass hashes (for
//     things looked up by value) or AES-GCM ciphertexts (for things shown
//     again), and the store treats them as opaque bytes.
//   - Every one-time thing (authorization code, refresh token, TOTP step,
//     backup code, flow completion) is consumed by a single atomic statement
//     whose result says whether this caller won.
//   - Free text that comes from outside (a session's UserAgent and IP, an
//     audit event's Detail and IP, a mail's LastError) is stored as valid
//     UTF-8, each invalid sequence replaced by U+FFFD (ValidText): PostgreSQL
//     refuses invalid UTF-8 in a TEXT column, SQLite would keep it.
package store

import (
	"context"
	"errors"
	"strings"
	"time"
	"unicode/utf8"
)

// Errors returned by every Store implementation. Callers test them with
// errors.Is; implementations wrap them with context.
var (
	// ErrNotFound: no such record, or it has expired.
	ErrNotFound = errors.New("store: not found")
	// ErrDuplicate: a unique value (e-mail, client id, ...) is taken.
	ErrDuplicate = errors.New("store: already exists")
	// ErrConsumed: a one-time thing was already used (or lost a race).
	ErrConsumed = errors.New("store: already used")
	// ErrAccountInactive: the account a token exchange issues tokens to
	// is disabled or gone (TokenExchange).
	ErrAccountInactive = errors.New("store: the account is disabled or gone")
	// ErrUnavailable: the database cannot be reached right now, or it
	// rolled the transaction back for it to be tried again (to break a
	// deadlock, or a serialisation failure).
	ErrUnavailable = errors.New("store: database unavailable")
	// ErrOtherAlgorithm: AddSigningKey, told to keep the algorithm, found
	// a current key of another algorithm than the new key's.
	ErrOtherAlgorithm = errors.New("store: the current signing key is of another algorithm")
)

// ValidText is s as valid UTF-8: each run of bytes that is not UTF-8 (a
// Latin-1 "caf\xe9" in a header, a character cut in two) is replaced by
// U+FFFD. What the store writes to a free-text column goes through it.
func ValidText(s string) string { return strings.ToValidUTF8(s, "\uFFFD") }

// ClipText is ValidText(s) cut to at most n bytes, at a character boundary
// (never in the middle of a character): free text from outside, bounded
// before it is stored or shown.
func ClipText(s string, n int) string {
	s = ValidText(s)
	if len(s) <= n {
		return s
	}
	n = max(n, 0)
	for n > 0 && !utf8.RuneStart(s[n]) {
		n--
	}
	return s[:n]
}

// ThrottleQuiet is how long after its last failure a throttle (its
// failures and lockouts) is forgotten, once it is not locked.
const ThrottleQuiet = 24 * time.Hour

// User is a customer account.
type User struct {
	ID           string // opaque, random, stable: the OIDC "sub"
	Email        string // as entered; unique case-insensitively
	Name         string
	Locale       string // "ja" or "en"; empty means the default
	PasswordHash string // PHC-formatted argon2id hash
	CreatedAt    time.Time
	UpdatedAt    time.Time
	// EmailVerifiedAt is when the user showed the address is theirs (by
	// using a password reset link sent there); zero: never.
	EmailVerifiedAt time.Time
	// SecurityStamp is replaced, by the store, whenever the account's
	// credentials change (UpdatePassword, ConfirmTOTP, DeleteMFA; not
	// UpgradePasswordHash: the password is the same). A login's session
	// starts (StartSession), and a device cookie counts, only while the
	// stamp they saw is the account's.
	SecurityStamp string
	// DisabledAt is when the support desk disabled the account
	// (SetUserDisabled); zero: it is not. A disabled account cannot log in.
	DisabledAt time.Time
	// MFAEnabled is derived: true while a confirmed TOTP authenticator exists.
	MFAEnabled bool
}

// Client is an OAuth 2.0 / OpenID Connect relying party.
type Client struct {
	ID                     string
	Name                   string
	SecretHash             []byte // keyed hash of the secret; empty for public clients
	RedirectURIs           []string
	PostLogoutRedirectURIs []string
	Public                 bool
	FirstParty             bool // skips the consent page
	CreatedAt              time.Time
	// RotatedSecretHash is the keyed hash of the secret the client had
	// before its last rotation, still taken until RotatedUntil (zero: not
	// at all).
	RotatedSecretHash []byte
	RotatedUntil      time.Time
}

// SigningKey is a token signing key. The private part is encrypted with the
// master key; the public part is a JWK (JSON).
type SigningKey struct {
	ID         string // the JWK "kid"
	Algorithm  string // "RS256", "ES256", ...
	PrivateEnc []byte
	PublicJWK  []byte
	CreatedAt  time.Time
	// RetiredAt is when a newer key replaced this one; zero for the current
	// key. A retired key stays published until no token it signed is alive.
	RetiredAt time.Time
}

// LoginEnd is what StartSession records of the login it ends.
type LoginEnd struct {
	Key        []byte    // the login's key, recorded as spent
	SpentUntil time.Time // until when that record is kept
	Stamp      string    // the user's security stamp as the login read it
	TOTPStep   int64     // the TOTP code's time step of the second step (from the Unix epoch, never 0); 0: none
	// Code is the authorization code (KindAuthorizeCode) the login's
	// relying party gets in the new session, stored with it (nil: none).
	// A code issued under the user's consent (Consented) is stored, and
	// the session started, only while that consent exists.
	Code *TokenRecord
}

// Session is a server-side SSO session. The browser's cookie holds a random
// secret; the store holds only its hash (TokenHash).
type Session struct {
	TokenHash []byte
	ID        string // public session id: the "sid" claim; not a secret
	UserID    string
	AuthTime  time.Time
	AMR       []string // e.g. ["pwd"] or ["pwd","otp"]
	Remember  bool     // persistent cookie ("ログインしたままにする")
	CreatedAt time.Time
	LastSeen  time.Time
	ExpiresAt time.Time // absolute expiry
	UserAgent string
	IP        string
}

// Flow is the server-side state of an interaction in progress (a consent, a
// re-authentication for a sensitive setting; a login's state travels sealed
// in the browser's requests, and only its end is recorded: StartSession).
// Key is a hash of the random flow id the browser carries; Data is the
// caller's own encoding of the state, opaque to the store.
type Flow struct {
	Key       []byte
	Data      []byte
	CreatedAt time.Time
	ExpiresAt time.Time
}

// Consent is what a user allowed a relying party, as My Page lists it.
type Consent struct {
	ClientID   string
	ClientName string
	Scopes     []string  // every scope allowed so far (consents add up)
	UpdatedAt  time.Time // when the user last allowed the client something
}

// TOTP is a user's confirmed authenticator.
type TOTP struct {
	UserID      string
	SecretEnc   []byte // AES-GCM ciphertext, the user id bound as associated data
	LastStep    int64  // last accepted RFC 6238 time step (replay guard)
	ConfirmedAt time.Time
}

// SecondStep is what the second step of a login reads of an account.
type SecondStep struct {
	User     *User
	TOTP     *TOTP    // nil when the user has no authenticator
	Throttle Throttle // zero (but for its Key) when nothing is on record
	// LoginSession is the id of the session the login started (as
	// LoginSession reads it); "" while it has started none.
	LoginSession string
}

// PendingTOTP is an enrollment that has shown a secret but not yet seen a
// correct code. It changes nothing about the login until confirmed.
type PendingTOTP struct {
	UserID    string
	SecretEnc []byte
	CreatedAt time.Time
	ExpiresAt time.Time
}

// BackupCode is one single-use recovery code.
type BackupCode struct {
	Position int    // 0-based display order
	Hash     []byte // keyed hash (HMAC) of the normalised code: used to verify
	Enc      []byte // AES-GCM ciphertext of the code: used to show it again
	UsedAt   time.Time
}

// ThrottlePolicy says when repeated failures lock a key and for how long.
type ThrottlePolicy struct {
	MaxFailures int           // consecutive failures that trigger a lockout
	BaseLockout time.Duration // first lockout; each further one doubles it
	MaxLockout  time.Duration // cap on the lockout length
	// Forgive, when set, makes the count of failures a leaky bucket, for
	// keys that many people share (a client address: an office behind one
	// NAT): each whole Forgive that passes without a failure, while the key
	// is not locked, takes one failure off the count. A key failing at most
	// once per Forgive is never locked. Lockouts are not forgiven (each
	// doubles the next until the sweep forgets the key). Zero: failures
	// count until a lockout, a success (ResetThrottle) or the sweep.
	Forgive time.Duration
}

// Throttle is the failure counter behind a rate limit (per account, per IP, ...).
type Throttle struct {
	Key         string
	Failures    int // consecutive failures since the last lockout or success
	Lockouts    int // lockouts so far; a success resets it
	LockedUntil time.Time
}

// AuditEvent is a security-relevant event on an account.
type AuditEvent struct {
	ID        int64
	UserID    string
	Type      string // e.g. "mfa.enabled"; see package audit for the list
	Detail    string // small JSON object, never a secret
	IP        string
	CreatedAt time.Time
}

// PasswordReset is a password reset link's token (its hash only).
type PasswordReset struct {
	TokenHash []byte
	UserID    string
	CreatedAt time.Time
	ExpiresAt time.Time
	UsedAt    time.Time // zero while unused
}

// Mail is one message in the outbox. The sender worker claims due mails
// (a lease in ClaimedUntil), sends them and marks them sent, or reschedules
// them with the error.
// MailNever is the NextAttemptAt of a mail given up on (GiveUpMail).
var MailNever = time.Date(9999, 12, 31, 23, 59, 59, 0, time.UTC)

type Mail struct {
	ID            int64
	To            string
	Subject       string
	Body          string // plain text, UTF-8
	Attempts      int    // sending attempts started so far
	NextAttemptAt time.Time
	ClaimedUntil  time.Time
	SentAt        time.Time // zero until sent
	LastError     string    // the last failure, never the body
	CreatedAt     time.Time
	// ExpiresAt is when the mail's content stops working (a reset link's
	// expiry; zero: never): a mail not sent by then is given up.
	ExpiresAt time.Time
}

// Token kinds held by the OAuth request table.
const (
	KindAuthorizeCode = "code"
	KindAccessToken   = "access"
	KindRefreshToken  = "refresh"
	KindOpenIDSession = "oidc"
	KindPKCE          = "pkce"
)

// TokenRecord is one fosite request stored under a token signature (never
// the token itself).
type TokenRecord struct {
	Kind      string
	Signature string
	RequestID string
	ClientID  string
	Subject   string
	SessionID string // the SSO session's public id, when there was one
	Data      []byte // the serialised request (scopes, session claims, form subset)
	Active    bool
	CreatedAt time.Time
	ExpiresAt time.Time
	// Successor (a refresh token spent by a refresh; read, never written
	// by CreateToken) is the refresh token that refresh issued.
	Successor string
	// Consented (a code of a client that asks for consent; not stored):
	// CreateToken stores it only while the subject's consent to the client
	// exists, as it does only while its session exists.
	Consented bool
}

// TokenExchange is what the token endpoint writes for one request: the
// code or refresh token being spent is deactivated (ErrConsumed when it was
// inactive already, so of two concurrent requests exactly one succeeds;
// ErrNotFound when there is none) and only then are the tokens of
// RevokeKind issued for RevokeRequest deactivated (a refresh revokes the
// access tokens of the grant it rotates) and Create stored. All of it
// happens, or none of it. Create are tokens of one subject (an error
// otherwise), and the exchange does not interleave with ending that
// user's sessions (DeleteUserSessions, DeleteUserSession): either those
// deactivate the tokens it created, or it fails as a spend of a
// deactivated token. Tokens about an account (Subject) are issued only
// while it exists and is not disabled: ErrAccountInactive otherwise, with nothing spent (so a
// refresh token refused while its account is disabled works again once it
// is enabled).
//
// The code or refresh token spent is kept until the latest expiry among
// Create, where its own is earlier: a reuse found while the tokens it
// issued may live is refused and revokes them (RFC 6749 4.1.2, RFC 9700
// 4.14.2), where one the expiry sweep had deleted would only be refused.
// (Only the spent record: raising every earlier one of a grant at each
// refresh would cost each refresh more than the one before.)
//
// A refresh records the refresh token it creates as the spent one's
// Successor. A retry of a refresh (Relink: the refresh token presented,
// spent already, whose Successor is the one spent now: see
// oidc.Storage.RefreshGrace) records it as Relink's Successor instead, so
// that the retry can be retried, while the successor it spends gets none:
// the lost answer's refresh token is then a reuse.
type TokenExchange struct {
	SpendKind, SpendSignature string
	RevokeKind, RevokeRequest string // both empty: nothing to revoke
	Create                    []*TokenRecord
	Relink                    string
}

// Store is the one storage interface of the identity provider.
type Store interface {
	// Ping reports whether the database is reachable.
	Ping(ctx context.Context) error
	// Close releases the connections.
	Close() error

	// BeginTx, Commit and Rollback run the calls made with the returned
	// context in one transaction (fosite's storage.Transactional).
	BeginTx(ctx context.Context) (context.Context, error)
	Commit(ctx context.Context) error
	Rollback(ctx context.Context) error

	// Users.
	CreateUser(ctx context.Context, u *User) error // ErrDuplicate for a taken e-mail
	GetUser(ctx context.Context, id string) (*User, error)
	GetUserByEmail(ctx context.Context, email string) (*User, error) // case-insensitive
	// UpdatePassword sets a new password: the hash, a new security stamp,
	// every unused reset link of the user voided (one mailed for the old
	// password must not set another one later) and a 2FA setup in progress
	// dropped (its password step was the old password's). ErrNotFound when
	// there is no such user.
	UpdatePassword(ctx context.Context, userID, passwordHash string, now time.Time) error
	// UpgradePasswordHash replaces the user's password hash with newHash
	// (the same password hashed at a higher cost) only while it is still
	// oldHash, the hash the caller verified: a password changed or reset
	// in the meantime is kept. When the hash is no longer oldHash, or there
	// is no such user, nothing changes and the answer is nil. UpdatedAt and
	// the security stamp are kept: the password did not change.
	UpgradePasswordHash(ctx context.Context, userID, oldHash, newHash string) error
	// MarkEmailVerified records that the user showed the address is theirs
	// at now (the first time counts); ErrNotFound when there is no such user.
	MarkEmailVerified(ctx context.Context, userID string, now time.Time) error
	// SetUserDisabled disables the account at at, or enables it again (at
	// zero); ErrNotFound for an unknown user. Disabling also replaces the
	// account's security stamp (logins half-way end, device cookies stop
	// counting), voids its reset links, deletes its sessions and
	// deactivates every token issued to the user, in one
	// transaction (the caller's, when ctx carries one) that first locks the
	// user's row, as ending sessions does. changed is false, and nothing
	// was done, when the account already was as asked (decided on the
	// locked row, so of two concurrent calls asking the same, one changes
	// it).
	SetUserDisabled(ctx context.Context, userID string, at time.Time) (changed bool, err error)
	// DeleteUser removes the account and what is kept of it: its sessions,
	// authenticator, backup codes, consents, reset links (foreign keys),
	// every token issued to it, its audit events and the mails to its
	// address still in the outbox, in one transaction that first locks the
	// user's row, as ending sessions does; ErrNotFound for an unknown user.
	DeleteUser(ctx context.Context, userID string) error
	// UpdateLocale sets the user's language ("ja" or "en": the security
	// e-mails and the ID token's locale); ErrNotFound for an unknown user.
	UpdateLocale(ctx context.Context, userID, locale string, now time.Time) error

	// Clients.
	CreateClient(ctx context.Context, c *Client) error // ErrDuplicate for a taken id
	GetClient(ctx context.Context, id string) (*Client, error)
	// ListClients returns every client, by id.
	ListClients(ctx context.Context) ([]Client, error)
	// UpdateClient replaces the name, redirect URIs, post-logout redirect
	// URIs and first-party flag of the client c.ID (its secret, kind and
	// creation time stay); ErrNotFound for an unknown client.
	UpdateClient(ctx context.Context, c *Client) error
	// SetClientSecret replaces the keyed hash of a confidential client's
	// secret; the one it replaces is still taken until keepOldUntil (zero:
	// not at all). ErrNotFound for an unknown client or a public one.
	SetClientSecret(ctx context.Context, id string, secretHash []byte, keepOldUntil time.Time) error
	// DeleteClient removes the client with its consents and every token it
	// holds (codes, access and refresh tokens), in one transaction;
	// ErrNotFound for an unknown client.
	DeleteClient(ctx context.Context, id string) error

	// MasterKeyCheck is the check value of the master key the database was
	// first used with (a MAC of a fixed input); ErrNotFound before that.
	MasterKeyCheck(ctx context.Context) ([]byte, error)
	// RecordMasterKeyCheck stores check as the master key's unless one is
	// stored already (a concurrent first start's), and returns the one
	// stored (for a database MasterKeyCheck found none in).
	RecordMasterKeyCheck(ctx context.Context, check []byte, now time.Time) ([]byte, error)

	// Signing keys.
	ListSigningKeys(ctx context.Context) ([]SigningKey, error) // newest first
	// CurrentSigningKeyID is the id of the current key (the one not
	// retired, the first ListSigningKeys returns); ErrNotFound when there
	// is none. A small read, made before a signature so that a key made
	// anywhere signs at once.
	CurrentSigningKeyID(ctx context.Context) (string, error)
	// AddSigningKey stores k as the current key and retires (RetiredAt=now)
	// every key that was current, in one transaction. With sameAlgorithm
	// it adds nothing and fails with ErrOtherAlgorithm when the current
	// key, read in that transaction, is of another algorithm than k's.
	AddSigningKey(ctx context.Context, k *SigningKey, now time.Time, sameAlgorithm bool) error
	// DeleteSigningKeysRetiredBefore removes retired keys no live token needs.
	DeleteSigningKeysRetiredBefore(ctx context.Context, t time.Time) (int, error)

	// SSO sessions.
	CreateSession(ctx context.Context, s *Session) error
	// StartSession ends a login: it records the login's key as spent
	// (until end.SpentUntil, when the login could no longer be finished
	// anyway) and creates the session s, both or neither, in one round
	// trip, and only while the user's security stamp is still end.Stamp
	// (the one the login read). ErrNotFound, and no session, when the login
	// was already spent (so of two requests finishing one login exactly one
	// gets a session), the user is gone, or the account's credentials
	// changed since the login read it (a new password, two-step
	// verification turned on or off); the login is not spent then (but
	// see TOTPStep below). A change
	// that commits while the call runs is ordered with it: either the
	// change's ending of the user's sessions sees the new session, or the
	// session is not created.
	//
	// With end.TOTPStep, the login's second step was a TOTP code of that
	// time step: it is recorded as the last accepted one first, and only
	// if it is later than the stored one; ErrConsumed otherwise (a replay,
	// or a concurrent request with the same code), with no session. So
	// the code is spent and the session started at once: a request that
	// finds the code spent by another one finishing the same login finds
	// that login's session too (LoginSession). ErrNotFound when the user
	// has no authenticator. A code accepted here stays spent even when the
	// session is refused (ErrNotFound above).
	//
	// With end.Code, the code is stored with the session, both or neither:
	// ErrNotFound, as for a changed account, when its consent is gone.
	StartSession(ctx context.Context, end LoginEnd, s *Session) error
	// LoginSession is the id of the session the login with this key
	// started (StartSession), as long as its record is kept; "" when it has
	// started none.
	LoginSession(ctx context.Context, loginKey []byte) (string, error)
	// GetSession returns the session whose cookie hashes to tokenHash, or
	// ErrNotFound when there is none or it expired (ExpiresAt <= now; a
	// zero now finds it expired or not).
	GetSession(ctx context.Context, tokenHash []byte, now time.Time) (*Session, error)
	// TouchSession records the session's last use and its expiry from
	// then (a session not remembered ends when idle); ErrNotFound when it
	// is gone.
	TouchSession(ctx context.Context, tokenHash []byte, lastSeen, expiresAt time.Time) error
	DeleteSession(ctx context.Context, tokenHash []byte) error
	// RotateSession gives the session of the user userID whose cookie
	// hashes to oldHash the cookie hash newHash instead, and returns it;
	// ErrNotFound when there is no such session (the old cookie then signs
	// nothing in).
	RotateSession(ctx context.Context, oldHash, newHash []byte, userID string) (*Session, error)
	// EndSession is a logout: it ends the session whose cookie hashes to
	// tokenHash, expired or not, and deactivates the access tokens and
	// unredeemed codes issued in it, every relying party's. Its refresh
	// tokens, issued for offline_access only, stay: access while the user
	// is not logged in (OIDC Core 11), as Keycloak's offline tokens survive
	// a logout. ErrNotFound when there is no such session.
	EndSession(ctx context.Context, tokenHash []byte) error
	// DeleteUserSessions ends every session of the user but the one whose
	// public id is exceptID (empty: all of them), and deactivates the
	// tokens issued in them or in no session (refresh tokens included:
	// ending a session from My Page or by a reset signs that device out of
	// the relying parties too). It returns how many sessions ended.
	DeleteUserSessions(ctx context.Context, userID, exceptID string) (int, error)
	ListUserSessions(ctx context.Context, userID string, now time.Time) ([]Session, error)
	// DeleteUserSession ends the user's session with public id id, and
	// deactivates the tokens issued in it; ErrNotFound when the user has no
	// such session.
	DeleteUserSession(ctx context.Context, userID, id string) error

	// Flows.
	PutFlow(ctx context.Context, f *Flow) error // insert or replace
	GetFlow(ctx context.Context, key []byte, now time.Time) (*Flow, error)
	// DeleteFlow removes the flow; ErrNotFound when it was already gone, so
	// of two requests completing one flow exactly one gets nil.
	DeleteFlow(ctx context.Context, key []byte) error

	// Consent, remembered per user and client.
	GetConsent(ctx context.Context, userID, clientID string) ([]string, error) // granted scopes; none: empty, nil error
	PutConsent(ctx context.Context, userID, clientID string, scopes []string, now time.Time) error
	// AddConsent adds scopes to what the user granted the client (creating
	// the consent), and returns all the scopes granted now: consents add
	// up. It is ordered with concurrent AddConsent and RevokeConsent calls
	// of the user (none of their scopes is lost, and a consent taken back
	// is not brought back by an approval read before it). ErrNotFound when
	// the user or the client does not exist.
	AddConsent(ctx context.Context, userID, clientID string, scopes []string, now time.Time) ([]string, error)
	// ListConsents returns the user's consents to clients that ask for one
	// (a first-party client never does), the most recently allowed first.
	ListConsents(ctx context.Context, userID string) ([]Consent, error)
	// RevokeConsent takes the user's consent to the client back: it deletes
	// it and deactivates every token the client holds for the user (access
	// and refresh tokens, authorization codes not yet redeemed), in one
	// transaction, so the client must ask again and its refresh tokens stop
	// working at once. ErrNotFound, and nothing changes, when there was no
	// consent.
	RevokeConsent(ctx context.Context, userID, clientID string) error

	// TOTP. Pending enrollments change nothing until ConfirmTOTP.
	PutPendingTOTP(ctx context.Context, p *PendingTOTP) error // replaces any earlier pending one
	GetPendingTOTP(ctx context.Context, userID string, now time.Time) (*PendingTOTP, error)
	// ConfirmTOTP atomically turns the pending enrollment whose SecretEnc
	// is secretEnc (the one the caller verified a code against) into the
	// user's authenticator with LastStep=step and replaces the backup codes
	// with codes, and gives the user a new security stamp. ErrNotFound when
	// no unexpired pending enrollment exists;
	// ErrConsumed when the one there is another (a setup started since
	// replaced it), which is left pending. Either way nothing changes.
	ConfirmTOTP(ctx context.Context, userID string, secretEnc []byte, step int64, codes []BackupCode, now time.Time) error
	// GetSecondStep reads what a login's second step needs in one
	// statement: the user, the authenticator, the throttle of throttleKey
	// and the session the login with loginKey started, if any
	// (LoginSession; no login: nil). ErrNotFound when there is no such user.
	GetSecondStep(ctx context.Context, userID, throttleKey string, loginKey []byte) (*SecondStep, error)
	// DeleteMFA removes the authenticator, any pending enrollment and every
	// backup code of the user, and gives the user a new security stamp when
	// there was an authenticator. ErrNotFound when there was none.
	DeleteMFA(ctx context.Context, userID string) error

	// Backup codes.
	ListBackupCodes(ctx context.Context, userID string) ([]BackupCode, error) // by Position
	// ReplaceBackupCodes replaces the user's codes; ErrNotFound when the
	// user has no authenticator (two-step verification turned off meanwhile).
	ReplaceBackupCodes(ctx context.Context, userID string, codes []BackupCode) error
	// UseBackupCode marks the unused code with this hash as used and returns
	// how many unused codes remain; ErrConsumed when no unused code matches.
	UseBackupCode(ctx context.Context, userID string, hash []byte, now time.Time) (remaining int, err error)

	// Throttles (rate limits kept in the store, so they hold across instances).
	GetThrottle(ctx context.Context, key string) (*Throttle, error) // zero Throttle when none
	// GetThrottles reads several keys in one statement; the result is in
	// the order of keys, with a zero Throttle for a key that has none.
	GetThrottles(ctx context.Context, keys ...string) ([]Throttle, error)
	// GetPasswordStep reads what a login's password step needs in one
	// statement: the user with this e-mail (compared as GetUserByEmail
	// does; nil when there is none) and the throttles of keys, as
	// GetThrottles returns them.
	GetPasswordStep(ctx context.Context, email string, keys ...string) (*User, []Throttle, error)
	// RecordFailure counts one failure (after what p.Forgive forgives);
	// when Failures reaches p.MaxFailures it locks the key for
	// BaseLockout*2^Lockouts (capped), increments Lockouts and resets
	// Failures, atomically.
	RecordFailure(ctx context.Context, key string, p ThrottlePolicy, now time.Time) (*Throttle, error)
	ResetThrottle(ctx context.Context, key string) error

	// Audit events.
	AddAuditEvent(ctx context.Context, e *AuditEvent) error
	ListAuditEvents(ctx context.Context, userID string, limit int) ([]AuditEvent, error) // newest first

	// OAuth requests, for fosite's storage adapters.
	// CreateToken stores the record; ErrDuplicate when its kind and
	// signature are taken. An authorization code issued in a session
	// (SessionID set) is stored only while its subject has that session:
	// ErrNotFound when the session has ended since the authorize endpoint
	// read it (and ending it does not interleave with storing the code);
	// the same for a code marked Consented whose consent was taken back.
	CreateToken(ctx context.Context, t *TokenRecord) error
	GetToken(ctx context.Context, kind, signature string) (*TokenRecord, error)
	// GetTokenWithUser is GetToken with the user the record is about (nil
	// when there is no such user) read in the same statement: what
	// userinfo needs of an access token.
	GetTokenWithUser(ctx context.Context, kind, signature string) (*TokenRecord, *User, error)
	DeleteToken(ctx context.Context, kind, signature string) error
	// DeactivateToken sets Active=false if it was true; ErrConsumed if it was
	// already inactive (a reused code or rotated-out refresh token),
	// ErrNotFound if absent.
	DeactivateToken(ctx context.Context, kind, signature string) error
	// DeactivateTokensByRequest sets Active=false on every token of the
	// kinds issued for requestID, in one statement (revocation, reuse
	// detection), those an exchange of the same grant in flight issues
	// included: it waits for the exchange (ExchangeTokens) to commit.
	DeactivateTokensByRequest(ctx context.Context, requestID string, kinds ...string) error
	// ExchangeTokens applies what a token request writes, atomically and in
	// one round trip: see TokenExchange.
	ExchangeTokens(ctx context.Context, x *TokenExchange) error
	// DeleteExpired removes expired tokens, flows, sessions, pending
	// enrollments and password reset tokens, and throttles quiet for
	// ThrottleQuiet and not locked, at most limit rows of each, and says
	// how many went.
	DeleteExpired(ctx context.Context, now time.Time, limit int) (int, error)

	// Password reset tokens.
	CreatePasswordReset(ctx context.Context, r *PasswordReset) error // ErrNotFound for an unknown or disabled user
	// GetPasswordReset returns the unused, unexpired token with this hash
	// (without using it); ErrNotFound otherwise.
	GetPasswordReset(ctx context.Context, tokenHash []byte, now time.Time) (*PasswordReset, error)
	// ConsumePasswordReset marks the unused, unexpired token used and
	// returns its user, in one conditional statement; ErrConsumed when it
	// is unknown, used or expired (or another caller won, or a password
	// set meanwhile voided it). It takes the user's row first, as
	// UpdatePassword does, so a reset (this, then UpdatePassword, in one
	// transaction) waits for a password change or another reset of the
	// user rather than deadlock with it.
	ConsumePasswordReset(ctx context.Context, tokenHash []byte, now time.Time) (userID string, err error)

	// Mail outbox.
	EnqueueMail(ctx context.Context, m *Mail) error // sets m.ID
	// ClaimMail leases up to limit due, unsent, unclaimed mails until
	// leaseUntil, counting an attempt on each, with one conditional
	// statement: of several instances, each mail goes to one of them.
	ClaimMail(ctx context.Context, now, leaseUntil time.Time, limit int) ([]Mail, error)
	// MarkMailSent records the mail as sent.
	MarkMailSent(ctx context.Context, id int64, now time.Time) error
	// RetryMail releases the claim and schedules another attempt at next,
	// recording lastError.
	RetryMail(ctx context.Context, id int64, next time.Time, lastError string) error
	// ReleaseMail gives back a claimed mail its worker did not try (it is
	// stopping, or its lease is too short for another send): due at once,
	// and the claim's attempt not counted, so the backoff of a mail that
	// later fails does not grow for tries that never happened. Only while
	// the claim is the one that lease made (ClaimedUntil as ClaimMail
	// returned it); ErrNotFound otherwise, or once the mail is sent.
	ReleaseMail(ctx context.Context, id int64, claimedUntil time.Time) error
	// GiveUpMail releases the claim and never attempts the mail again
	// (NextAttemptAt becomes MailNever), recording lastError: the server
	// refused it for good. The cleanup removes it with the others.
	GiveUpMail(ctx context.Context, id int64, lastError string) error
	// GetMail returns one mail (tests and tools).
	GetMail(ctx context.Context, id int64) (*Mail, error)
	// DeleteMailBefore removes mails created before t (sent ones, and ones
	// that could not be sent for that long), at most limit, and says how
	// many went.
	DeleteMailBefore(ctx context.Context, t time.Time, limit int) (int, error)
}
