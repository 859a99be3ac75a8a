// Package templates holds the hosted pages (templ components) and the data
// each one renders. Handlers in idp/web fill these structs; the components
// never reach back into the application.
package templates

// Page is what every hosted page shares.
type Page struct {
	Lang      string // "ja" (default) or "en"; the <html lang> and the message catalogue
	Title     string // optional override; otherwise each page's own title
	CSRF      string // CSRF token, posted back by every form as the hidden field "csrf"
	Brand     Brand
	RequestID string
	// LoggedIn shows the account links (マイページ, ログアウト) in the header.
	LoggedIn bool
	// LangLinks are the language switch in the footer: this page in each
	// language. Empty on pages that answer a form (they cannot be fetched
	// again by a link), but for a login's steps (StepPath).
	LangLinks []LangLink
	// StepPath is set on a login step's page that answers a form: the path
	// that shows the step again with GET and the flow of the page's form
	// (the TOTP form answering the password: /login/totp). The script puts
	// that address in the address bar, so that a reload or Back fetches
	// the step instead of posting the form again (without the script the
	// browser offers to post it again).
	StepPath string
}

// LangLink is this page in one language.
type LangLink struct {
	Lang    string // "ja" or "en"
	Label   string // the language's own name: 日本語, English
	Href    string // relative: "?…&lang=en"
	Current bool
}

// Brand is the configurable look of the pages (product name, logo, colours).
type Brand struct {
	// ID names a relying party family's brand (IDP_BRANDS_FILE); empty for
	// the provider's own (IDP_BRAND_*). It picks the colour's style sheet.
	ID           string
	ProductName  string // e.g. "ギガらくカメラ"; empty: a neutral default
	LogoURL      string // optional; same-origin path or https URL
	PrimaryColor string // CSS colour for buttons and links, e.g. "#0b5cad"
}

// LoginPage is the e-mail and password form (flows.md section 1).
type LoginPage struct {
	Page
	Action   string // form action (POST), e.g. "/login"
	Flow     string // hidden field "flow"
	Email    string // kept after a failed attempt, or the login_hint
	Remember bool
	// Error is a message key (see Messages); empty for none. Shown in role="alert".
	Error string
	// Notice: Error is about the login (it was started again), not about
	// what was typed: the fields are not marked invalid.
	Notice bool
	// ClientName is the relying party the user is logging in to, when there is one.
	ClientName string
	ForgotURL  string // the パスワードを忘れた方はこちら link
}

// TOTPPage is the second step: the authenticator code (flows.md section 2).
type TOTPPage struct {
	Page
	Action    string
	Flow      string
	Error     string
	BackupURL string // the バックアップコードを使用してログイン link
}

// BackupCodePage is the backup code step (flows.md section 3).
type BackupCodePage struct {
	Page
	Action  string
	Flow    string
	Error   string
	TOTPURL string // the 認証コード入力画面に戻る link
}

// LowBackupCodesPage is the interstitial after a backup-code login that left
// two or fewer unused codes.
type LowBackupCodesPage struct {
	Page
	Remaining   int
	ReplaceURL  string // where the user replaces the codes (after re-entering the password)
	ContinueURL string // continue to the relying party / My Page (a GET link)
}

// ConsentPage lists the scopes a third-party client asks for.
type ConsentPage struct {
	Page
	Action     string
	Flow       string
	ClientName string
	Scopes     []string // "openid", "profile", "email", "address", "phone", "offline_access"
}

// SelectAccountPage answers prompt=select_account while the browser is
// signed in: go on with the account of its session, or log in with another.
type SelectAccountPage struct {
	Page
	Action     string
	Flow       string
	ClientName string
	Email      string // the session's account
}

// ErrorPage is shown for errors that cannot be sent back to a relying party
// (an unregistered redirect URI, an expired flow, ...), for 404, 429, 500 and 503.
type ErrorPage struct {
	Page
	Status  int
	Message string // message key (see Messages) or, when not a key, shown as is
	Detail  string // optional extra text, never internals
	BackURL string // optional link back
}

// MessagePage is a simple notice with an optional link (logged out, password
// reset not yet available, ...).
type MessagePage struct {
	Page
	Heading  string // message key
	Message  string // message key
	LinkURL  string
	LinkText string // message key
}

// LogoutPage asks the user to confirm an RP-initiated logout.
type LogoutPage struct {
	Page
	Action     string
	Flow       string // hidden "flow" field carrying the validated logout request
	ClientName string
}

// AuditEntry is one line of the recent security events on My Page.
type AuditEntry struct {
	When   string // formatted in the page's locale
	Type   string // event type, e.g. "mfa.enabled"; the page maps it to a message
	Detail string // already human-readable (e.g. "残り 3 個"), may be empty
	IP     string
}

// AccountPage is My Page (マイページ): the account and its settings.
type AccountPage struct {
	Page
	Email      string
	Name       string
	MFAEnabled bool
	Events     []AuditEntry
	Notice     string // message key of a one-time notice (e.g. "2fa_disabled"), may be empty
	Locale     string // the account's language ("ja" or "en"): its e-mails
}

// TwoFAPage is the 2段階認証設定 section (/account/2fa).
type TwoFAPage struct {
	Page
	MFAEnabled     bool
	SetupURL       string // 設定
	DisableURL     string // 解除
	BackupCodesURL string
	RemainingCodes int
	Notice         string
}

// PasswordPromptPage re-asks the account password before a sensitive setting
// (turning 2FA on, showing backup codes). Disabling has its own page.
type PasswordPromptPage struct {
	Page
	Action  string
	Purpose string // "setup" or "backup_codes": selects heading and text
	Flow    string
	Error   string
}

// SetupPage is 手順1..手順3 of turning 2FA on.
type SetupPage struct {
	Page
	Action    string
	Flow      string
	QRDataURL string // data:image/png;base64,... of the otpauth:// URI
	KeyURI    string // the otpauth:// URI itself, for a phone that is also the 認証端末
	SetupKey  string // base32, grouped in fours
	Error     string
}

// SetupDonePage is 2段階認証設定の完了 with the new backup codes.
type SetupDonePage struct {
	Page
	Codes     []string
	TwoFAURL  string // the 2段階認証の設定ページ link
	ReturnURL string // optional: continue where the user was going
}

// BackupCode is one code on the backup codes page.
type BackupCode struct {
	Code string
	Used bool
}

// BackupCodesPage shows the codes again (used ones marked) and offers to
// replace them all.
type BackupCodesPage struct {
	Page
	Codes         []BackupCode
	ReplaceAction string // POST: replace all codes
	Flow          string // re-authentication proof for the replace form
	Replaced      bool   // the codes were just replaced
	ReturnURL     string // optional "continue" link (after the low-codes interstitial)
}

// DisablePage is 2段階認証の解除 (flows.md section 5).
type DisablePage struct {
	Page
	Action    string
	Flow      string
	CancelURL string
	Error     string
}

// ForgotPasswordPage asks for the e-mail address of a password reset.
type ForgotPasswordPage struct {
	Page
	Action   string // POST
	LoginURL string // back to the login it came from (its flow), else /login
	Email    string
	Error    string
}

// NewPasswordPage sets a new password: after a reset link (Token set) or
// on My Page (AskCurrent: the current password first).
type NewPasswordPage struct {
	Page
	Action     string
	Token      string // hidden field "token" (reset link)
	AskCurrent bool   // password change: field "password" for the current one
	Email      string // the account, for password managers (autocomplete="username")
	CancelURL  string
	Error      string // message key
	// CurrentWrong: Error is about the current password (wrong, or too
	// many tries), not the new one.
	CurrentWrong bool
}

// SessionEntry is one signed-in device on the sessions page.
type SessionEntry struct {
	ID       string // public session id, posted back as "session"
	Device   string // from the user agent
	IP       string
	LastSeen string
	Created  string
	Current  bool // this browser
}

// SessionsPage lists the account's active sessions.
type SessionsPage struct {
	Page
	Sessions           []SessionEntry
	RevokeAction       string // POST with "session"
	RevokeOthersAction string // POST: every session but this one
	Notice             string
}

// AppEntry is one relying party on the apps page: a client the user has
// allowed access to the account.
type AppEntry struct {
	ClientID string   // posted back as "client"
	Name     string   // the client's registered name
	Brand    string   // the product name of its family (IDP_BRANDS_FILE), if any
	Scopes   []string // what the user allowed, shown with the consent page's words
	Granted  string   // when the user last allowed it, formatted
}

// AppsPage lists the apps with access to the account, each with a form
// that takes the access back.
type AppsPage struct {
	Page
	Apps         []AppEntry
	RevokeAction string // POST with "client"
	Notice       string
}
