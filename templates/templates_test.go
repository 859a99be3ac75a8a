package templates

import (
	"bytes"
	"context"
	"io/fs"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"unicode"

	"github.com/a-h/templ"
	"golang.org/x/net/html"
)

const (
	testCSRF = "csrf-token-123"
	testQR   = "data:image/png;base64,iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk+M9QDwADhgGAWjR9awAAAABJRU5ErkJggg=="
)

func page(lang string, loggedIn bool) Page {
	return Page{Lang: lang, CSRF: testCSRF, RequestID: "req-42", LoggedIn: loggedIn,
		Brand: Brand{ProductName: "Kamera", LogoURL: "/static/logo.png", PrimaryColor: "#0b5cad"}}
}

// pageCase is one rendered page and what it must contain.
type pageCase struct {
	name  string
	c     templ.Component
	flow  string   // expected hidden "flow" value ("" for no flow field)
	forms int      // forms in <main> (the header's logout form is separate)
	ja    []string // exact Japanese strings (checked in the ja rendering only)
	alert bool     // a role="alert" is expected
}

func cases(lang string) []pageCase {
	p := page(lang, false)
	acct := page(lang, true)
	return []pageCase{
		{name: "login", c: Login(LoginPage{Page: p, Action: "/login", Flow: "flow-login", Email: "a@example.com", Remember: true,
			Error: "invalid_credentials", ClientName: "Viewer", ForgotURL: "/forgot-password"}),
			flow: "flow-login", forms: 1, alert: true,
			ja: []string{"メールアドレス", "パスワード", "ログインしたままにする", "ログイン", "パスワードを忘れた方はこちら",
				"メールアドレスまたはパスワードが正しくありません。"}},
		{name: "totp", c: TOTP(TOTPPage{Page: p, Action: "/login/totp", Flow: "flow-totp", Error: "invalid_code", BackupURL: "/login/backup?flow=x"}),
			flow: "flow-totp", forms: 1, alert: true,
			ja: []string{"2段階認証コード入力", "認証システムアプリから確認コードを取得して入力してください。", "認証コード", "認証する",
				"または", "バックアップコードを使用してログイン"}},
		{name: "backup_login", c: BackupCodeLogin(BackupCodePage{Page: p, Action: "/login/backup", Flow: "flow-backup", Error: "invalid_backup_code", TOTPURL: "/login/totp?flow=x"}),
			flow: "flow-backup", forms: 1, alert: true,
			ja: []string{"バックアップコード入力", "認証コードがわからない場合、バックアップコードでもログイン可能です。", "バックアップコード",
				"認証する", "認証コード入力画面に戻る"}},
		{name: "low_codes", c: LowBackupCodes(LowBackupCodesPage{Page: p, Remaining: 2, ReplaceURL: "/account/2fa/backup-codes?continue=c", ContinueURL: "/login/continue?flow=c"}),
			ja: []string{"残り 2 個", "新しいバックアップコードを発行", "このまま続ける"}},
		{name: "consent", c: Consent(ConsentPage{Page: p, Action: "/consent", Flow: "flow-consent", ClientName: "Partner App",
			Scopes: []string{"openid", "profile", "email", "address", "phone", "offline_access", "custom:scope"}}),
			flow: "flow-consent", forms: 1, ja: []string{"許可する", "拒否する", "Partner App", "custom:scope"}},
		{name: "select_account", c: SelectAccount(SelectAccountPage{Page: p, Action: "/login/account", Flow: "flow-account", ClientName: "Viewer", Email: "user@example.com"}),
			flow: "flow-account", forms: 1, ja: []string{"アカウントの選択", "Viewer で使用するアカウントを選択してください。", "user@example.com",
				"このアカウントで続ける", "別のアカウントでログイン"}},
		{name: "error", c: Error(ErrorPage{Page: p, Status: 400, Message: "flow_expired", Detail: "invalid_request", BackURL: "/login"}),
			alert: true, ja: []string{"リクエストID: req-42", "操作の有効期限が切れました。"}},
		{name: "error_plain", c: Error(ErrorPage{Page: p, Status: 500, Message: "something plain"}), alert: true,
			ja: []string{"something plain", `<a href="/account">マイページへ</a>`}},
		{name: "message", c: Message(MessagePage{Page: p, Heading: "forgot_password", Message: "password_reset_unavailable", LinkURL: "/login", LinkText: "back_to_login"}),
			ja: []string{"サポート窓口", "ログイン画面に戻る"}},
		{name: "logout", c: Logout(LogoutPage{Page: p, Action: "/logout", Flow: "flow-logout", ClientName: "Viewer"}),
			flow: "flow-logout", forms: 1, ja: []string{"ログアウトしますか？", "Viewer", "ログアウト"}},
		{name: "account", c: Account(AccountPage{Page: acct, Email: "user@example.com", Name: "Taro", MFAEnabled: true, Notice: "2fa_disabled", Locale: "en",
			Events: []AuditEntry{
				{When: "2024/01/02 15:04", Type: "mfa.enabled", IP: "192.0.2.1"},
				{When: "2024/01/02 15:05", Type: "mfa.backup_code_used", Detail: "3 left", IP: "192.0.2.1"},
				{When: "2024/01/02 15:06", Type: "custom.event"},
			}}),
			forms: 1, ja: []string{"マイページ", "アカウント", "設定", "2段階認証設定", "有効", "user@example.com", "2段階認証を設定", "custom.event",
				`<form method="post" action="/account/locale"`, `<option value="en" lang="en" selected>English</option>`,
				`href="/account/apps"`}},
		{name: "account_apps", c: Apps(AppsPage{Page: acct, RevokeAction: "/account/apps/revoke", Notice: "app_revoked",
			Apps: []AppEntry{
				{ClientID: "partner", Name: "Partner App", Scopes: []string{"openid", "email", "offline_access"}, Granted: "2024/01/02 15:04"},
				{ClientID: "door-cam", Name: "Door Cam Viewer", Brand: "Door Camera", Scopes: []string{"openid"}, Granted: "2024/01/01 09:00"},
			}}),
			forms: 2, ja: []string{"アクセスを許可したアプリ", "Partner App", "Door Camera", "メールアドレス", "許可した日時: 2024/01/02 15:04",
				"アクセスを取り消す", "アプリのアクセスを取り消しました。", `name="client" value="door-cam"`, `href="/account/sessions"`}},
		{name: "account_apps_none", c: Apps(AppsPage{Page: acct, RevokeAction: "/account/apps/revoke"}),
			ja: []string{"アクセスを許可したアプリはありません。"}},
		{name: "twofa_off", c: TwoFA(TwoFAPage{Page: acct, MFAEnabled: false, SetupURL: "/account/2fa/setup", DisableURL: "/account/2fa/disable", BackupCodesURL: "/account/2fa/backup-codes"}),
			ja: []string{"2段階認証設定", "無効", "設定"}},
		{name: "twofa_on", c: TwoFA(TwoFAPage{Page: acct, MFAEnabled: true, SetupURL: "/account/2fa/setup", DisableURL: "/account/2fa/disable",
			BackupCodesURL: "/account/2fa/backup-codes", RemainingCodes: 7, Notice: "codes_replaced"}),
			ja: []string{"有効", "解除", "バックアップコードを表示", "残り 7 個", `<h2 id="disable-heading">2段階認証の解除</h2>`}},
		{name: "prompt_setup", c: PasswordPrompt(PasswordPromptPage{Page: acct, Action: "/account/2fa/setup", Purpose: "setup", Flow: "flow-setup", Error: "invalid_password"}),
			flow: "flow-setup", forms: 1, alert: true, ja: []string{"2段階認証の設定", "送信", "パスワードが正しくありません。"}},
		{name: "prompt_codes", c: PasswordPrompt(PasswordPromptPage{Page: acct, Action: "/account/2fa/backup-codes", Purpose: "backup_codes", Flow: "flow-codes"}),
			flow: "flow-codes", forms: 1, ja: []string{"バックアップコードの表示", "送信"}},
		{name: "setup", c: Setup(SetupPage{Page: acct, Action: "/account/2fa/setup", Flow: "flow-setup", QRDataURL: testQR, SetupKey: "JBSW Y3DP EHPK 3PXP", Error: "invalid_code",
			KeyURI: "otpauth://totp/Camera%20ID:user%40example.com?issuer=Camera+ID&secret=JBSWY3DPEHPK3PXP"}),
			flow: "flow-setup", forms: 1, alert: true,
			ja: []string{"2段階認証の設定", "以下の手順で設定してください。", `href="otpauth://totp/Camera%20ID:user%40example.com?issuer=Camera+ID&amp;secret=JBSWY3DPEHPK3PXP"`, "この端末の認証アプリで開く", "手順1", "認証アプリをインストールしてください", "手順2", "手順3", "認証アプリを起動し下のQRコードを読み込んでください",
				"QRコードを読み込めない場合は下記のセットアップキーを入力してください", "認証アプリに表示された確認コードを入力し送信してください",
				"送信", "Google Authenticator", "Google認証システム", "App Store", "Google Play"}},
		{name: "setup_done", c: SetupDone(SetupDonePage{Page: acct, Codes: []string{"abcd-efgh", "ijkl-mnop"}, TwoFAURL: "/account/2fa", ReturnURL: "/login/continue?flow=z"}),
			ja: []string{"2段階認証設定の完了", "各コードは1度しか使用することはできません。", "安全な場所に保管", "2段階認証の設定ページ", "続ける"}},
		{name: "backup_codes", c: BackupCodes(BackupCodesPage{Page: acct, ReplaceAction: "/account/2fa/backup-codes/replace", Flow: "flow-codes", Replaced: true,
			ReturnURL: "/login/continue?flow=z",
			Codes:     []BackupCode{{Code: "abcd-efgh"}, {Code: "ijkl-mnop", Used: true}, {Code: "qrst-uvwx"}}}),
			flow: "flow-codes", forms: 1, ja: []string{"バックアップコード", "すべて新しいコードに置き換える", "使用済み", "続ける"}},
		{name: "disable", c: Disable(DisablePage{Page: acct, Action: "/account/2fa/disable", Flow: "flow-disable", CancelURL: "/account/2fa", Error: "invalid_password"}),
			flow: "flow-disable", forms: 1, alert: true,
			ja: []string{"2段階認証の解除", "2段階認証を解除をします。ユーザーアカウントのパスワードを入力し解除ボタンを押してください。",
				"パスワード", "キャンセル", "解除"}},
	}
}

func render(t *testing.T, c templ.Component) (string, *html.Node) {
	t.Helper()
	var buf bytes.Buffer
	if err := c.Render(context.Background(), &buf); err != nil {
		t.Fatalf("render: %v", err)
	}
	doc, err := html.Parse(strings.NewReader(buf.String()))
	if err != nil {
		t.Fatalf("parse: %v", err)
	}
	return buf.String(), doc
}

func attr(n *html.Node, key string) (string, bool) {
	for _, a := range n.Attr {
		if a.Key == key {
			return a.Val, true
		}
	}
	return "", false
}

func hasClass(n *html.Node, class string) bool {
	v, _ := attr(n, "class")
	for _, c := range strings.Fields(v) {
		if c == class {
			return true
		}
	}
	return false
}

func findAll(n *html.Node, match func(*html.Node) bool) []*html.Node {
	var out []*html.Node
	var walk func(*html.Node)
	walk = func(n *html.Node) {
		if n.Type == html.ElementNode && match(n) {
			out = append(out, n)
		}
		for c := n.FirstChild; c != nil; c = c.NextSibling {
			walk(c)
		}
	}
	walk(n)
	return out
}

func tag(name string) func(*html.Node) bool {
	return func(n *html.Node) bool { return n.Data == name }
}

func byID(n *html.Node, id string) *html.Node {
	all := findAll(n, func(n *html.Node) bool { v, _ := attr(n, "id"); return v == id })
	if len(all) != 1 {
		return nil
	}
	return all[0]
}

func text(n *html.Node) string {
	var b strings.Builder
	var walk func(*html.Node)
	walk = func(n *html.Node) {
		if n.Type == html.TextNode {
			b.WriteString(n.Data)
		}
		for c := n.FirstChild; c != nil; c = c.NextSibling {
			walk(c)
		}
	}
	walk(n)
	return b.String()
}

// input finds the single form control named name.
func input(t *testing.T, doc *html.Node, name string) *html.Node {
	t.Helper()
	all := findAll(doc, func(n *html.Node) bool {
		v, _ := attr(n, "name")
		return v == name && (n.Data == "input" || n.Data == "button")
	})
	if len(all) == 0 {
		t.Fatalf("no field named %q", name)
	}
	return all[0]
}

// isJapanese reports a rune only a Japanese text would have (kana, kanji,
// full-width forms and CJK punctuation).
func isJapanese(r rune) bool {
	return unicode.In(r, unicode.Hiragana, unicode.Katakana, unicode.Han) ||
		(r >= 0x3000 && r <= 0x303f) || (r >= 0xff00 && r <= 0xffef)
}

// TestPagesCommon checks what every page must have, in both languages.
func TestPagesCommon(t *testing.T) {
	for _, lang := range []string{LangJA, LangEN} {
		for _, tc := range cases(lang) {
			t.Run(lang+"/"+tc.name, func(t *testing.T) {
				out, doc := render(t, tc.c)
				if !strings.HasPrefix(out, "<!doctype html>") {
					t.Errorf("no doctype: %.40q", out)
				}
				htmlEl := findAll(doc, tag("html"))[0]
				if v, _ := attr(htmlEl, "lang"); v != lang {
					t.Errorf(`<html lang=%q>, want %q`, v, lang)
				}
				titles := findAll(doc, tag("title"))
				if len(titles) != 1 || !strings.HasSuffix(text(titles[0]), " | Kamera") {
					t.Errorf("title: %v", titles)
				}
				for _, href := range []string{"/static/style.css", "/static/brand.css"} {
					if len(findAll(doc, func(n *html.Node) bool { v, _ := attr(n, "href"); return n.Data == "link" && v == href })) != 1 {
						t.Errorf("no <link> to %s", href)
					}
				}
				// The CSP forbids inline scripts and styles.
				for _, s := range findAll(doc, tag("script")) {
					if src, ok := attr(s, "src"); !ok || src == "" || strings.TrimSpace(text(s)) != "" {
						t.Errorf("inline script: %s", out)
					}
				}
				if len(findAll(doc, tag("style"))) != 0 {
					t.Error("<style> element")
				}
				if st := findAll(doc, func(n *html.Node) bool { _, ok := attr(n, "style"); return ok }); len(st) != 0 {
					t.Errorf("style= attribute on <%s>", st[0].Data)
				}
				if regexp.MustCompile(`(?i)\son[a-z]+=`).MatchString(out) || strings.Contains(out, "javascript:") ||
					strings.Contains(out, string(templ.FailedSanitizationURL)) {
					t.Error("event handler attribute, javascript: URL or failed sanitization")
				}

				// Forms: POST, hidden csrf, the flow when there is one.
				main := findAll(doc, tag("main"))
				if len(main) != 1 {
					t.Fatal("want one <main>")
				}
				forms := findAll(main[0], tag("form"))
				if len(forms) != tc.forms {
					t.Errorf("%d forms in main, want %d", len(forms), tc.forms)
				}
				for _, f := range findAll(doc, tag("form")) {
					if m, _ := attr(f, "method"); m != "post" {
						t.Errorf("form method %q", m)
					}
					if a, _ := attr(f, "action"); a == "" {
						t.Error("form without action")
					}
					csrf := findAll(f, func(n *html.Node) bool { v, _ := attr(n, "name"); return v == "csrf" })
					if len(csrf) != 1 {
						t.Fatalf("form has %d csrf fields", len(csrf))
					}
					if v, _ := attr(csrf[0], "value"); v != testCSRF {
						t.Errorf("csrf = %q", v)
					}
					if typ, _ := attr(csrf[0], "type"); typ != "hidden" {
						t.Errorf("csrf type %q", typ)
					}
				}
				for _, f := range forms {
					flows := findAll(f, func(n *html.Node) bool { v, _ := attr(n, "name"); return v == "flow" })
					if tc.flow == "" {
						if len(flows) != 0 {
							t.Error("unexpected flow field")
						}
						continue
					}
					if len(flows) != 1 {
						t.Fatalf("form has %d flow fields", len(flows))
					}
					if v, _ := attr(flows[0], "value"); v != tc.flow {
						t.Errorf("flow = %q, want %q", v, tc.flow)
					}
					if typ, _ := attr(flows[0], "type"); typ != "hidden" {
						t.Errorf("flow type %q", typ)
					}
				}

				// Every visible field has a label bound to it.
				for _, in := range findAll(doc, tag("input")) {
					if typ, _ := attr(in, "type"); typ == "hidden" {
						continue
					}
					id, _ := attr(in, "id")
					if id == "" || len(findAll(doc, func(n *html.Node) bool { v, _ := attr(n, "for"); return n.Data == "label" && v == id })) != 1 {
						t.Errorf("input %v has no label", in.Attr)
					}
				}

				// Errors: role="alert", and the fields point at it.
				alerts := findAll(doc, func(n *html.Node) bool { v, _ := attr(n, "role"); return v == "alert" })
				if tc.alert != (len(alerts) == 1) {
					t.Errorf("%d role=alert, want alert=%v", len(alerts), tc.alert)
				}
				if tc.alert && tc.forms > 0 {
					id, _ := attr(alerts[0], "id")
					described := findAll(doc, func(n *html.Node) bool {
						v, _ := attr(n, "aria-describedby")
						return slices.Contains(strings.Fields(v), id)
					})
					if id == "" || len(described) == 0 {
						t.Error("no field is aria-describedby the error")
					}
				}

				// Header links when logged in.
				logout := findAll(doc, func(n *html.Node) bool { v, _ := attr(n, "action"); return n.Data == "form" && v == "/logout" })
				account := findAll(doc, func(n *html.Node) bool { v, _ := attr(n, "href"); return n.Data == "a" && v == "/account" })
				header := findAll(doc, tag("header"))
				if len(header) != 1 {
					t.Fatal("want one <header>")
				}
				inHeader := len(findAll(header[0], func(n *html.Node) bool { v, _ := attr(n, "action"); return v == "/logout" }))
				loggedIn := strings.HasPrefix(tc.name, "account") || strings.HasPrefix(tc.name, "twofa") ||
					strings.HasPrefix(tc.name, "prompt") || strings.HasPrefix(tc.name, "setup") ||
					strings.HasPrefix(tc.name, "backup_codes") || tc.name == "disable"
				if loggedIn != (inHeader == 1) || (loggedIn && (len(logout) == 0 || len(account) == 0)) {
					t.Errorf("logged-in header: logout forms %d, /account links %d", inHeader, len(account))
				}

				if lang == LangJA {
					for _, s := range tc.ja {
						if !strings.Contains(out, s) {
							t.Errorf("missing %q", s)
						}
					}
				} else {
					// A language's own name (marked lang="ja") is Japanese on purpose.
					for _, n := range findAll(doc, func(n *html.Node) bool { v, _ := attr(n, "lang"); return v == LangJA && n.Data != "html" }) {
						n.Parent.RemoveChild(n)
					}
					body := text(findAll(doc, tag("body"))[0])
					if i := strings.IndexFunc(body, isJapanese); i >= 0 {
						t.Errorf("Japanese text in the English page: %q", body[max(0, i-40):min(len(body), i+40)])
					}
				}
			})
		}
	}
}

func TestLoginFields(t *testing.T) {
	for _, lang := range []string{LangJA, LangEN} {
		_, doc := render(t, Login(LoginPage{Page: page(lang, false), Action: "/login", Flow: "f", Email: "a@example.com",
			Remember: true, ForgotURL: "/forgot-password"}))
		email := input(t, doc, "email")
		for k, want := range map[string]string{"type": "email", "value": "a@example.com"} {
			if v, _ := attr(email, k); v != want {
				t.Errorf("email %s = %q, want %q", k, v, want)
			}
		}
		if v, _ := attr(email, "autocomplete"); !strings.Contains(v, "username") && !strings.Contains(v, "email") {
			t.Errorf("email autocomplete %q", v)
		}
		pw := input(t, doc, "password")
		if v, _ := attr(pw, "type"); v != "password" {
			t.Errorf("password type %q", v)
		}
		if v, _ := attr(pw, "autocomplete"); v != "current-password" {
			t.Errorf("password autocomplete %q", v)
		}
		for _, in := range []*html.Node{email, pw} {
			if _, ok := attr(in, "required"); !ok {
				t.Error("not required")
			}
			if _, ok := attr(in, "aria-describedby"); ok {
				t.Error("aria-describedby without an error")
			}
		}
		remember := input(t, doc, "remember")
		if v, _ := attr(remember, "type"); v != "checkbox" {
			t.Errorf("remember type %q", v)
		}
		if v, _ := attr(remember, "value"); v != "1" {
			t.Errorf("remember value %q", v)
		}
		if _, ok := attr(remember, "checked"); !ok {
			t.Error("remember not checked")
		}
		if len(findAll(doc, func(n *html.Node) bool { v, _ := attr(n, "href"); return n.Data == "a" && v == "/forgot-password" })) != 1 {
			t.Error("no forgot-password link")
		}
		if len(findAll(doc, func(n *html.Node) bool { v, _ := attr(n, "role"); return v == "alert" })) != 0 {
			t.Error("alert without an error")
		}
	}
	// Not remembered: unchecked.
	_, doc := render(t, Login(LoginPage{Page: page(LangJA, false), Action: "/login", Flow: "f"}))
	if _, ok := attr(input(t, doc, "remember"), "checked"); ok {
		t.Error("remember checked")
	}
}

func TestCodeFields(t *testing.T) {
	for _, c := range []templ.Component{
		TOTP(TOTPPage{Page: page(LangJA, false), Action: "/login/totp", Flow: "f", BackupURL: "/login/backup?flow=f"}),
		Setup(SetupPage{Page: page(LangJA, true), Action: "/account/2fa/setup", Flow: "f", QRDataURL: testQR, SetupKey: "JBSW Y3DP"}),
	} {
		_, doc := render(t, c)
		code := input(t, doc, "code")
		for k, want := range map[string]string{"autocomplete": "one-time-code", "inputmode": "numeric", "type": "text"} {
			if v, _ := attr(code, k); v != want {
				t.Errorf("code %s = %q, want %q", k, v, want)
			}
		}
		// No pattern: the full-width digits of a Japanese IME are accepted
		// (by the server), so the browser must let them be sent.
		if v, ok := attr(code, "pattern"); ok {
			t.Errorf("code pattern %q would refuse full-width digits", v)
		}
		if _, ok := attr(code, "required"); !ok {
			t.Error("code not required")
		}
	}
	_, doc := render(t, TOTP(TOTPPage{Page: page(LangJA, false), Action: "/login/totp", Flow: "f", BackupURL: "/login/backup?flow=f"}))
	if len(findAll(doc, func(n *html.Node) bool { v, _ := attr(n, "href"); return v == "/login/backup?flow=f" })) != 1 {
		t.Error("no backup code link")
	}

	_, doc = render(t, BackupCodeLogin(BackupCodePage{Page: page(LangJA, false), Action: "/login/backup", Flow: "f", TOTPURL: "/login/totp?flow=f"}))
	bc := input(t, doc, "backup_code")
	for k, want := range map[string]string{"autocomplete": "off", "autocapitalize": "none"} {
		if v, _ := attr(bc, k); v != want {
			t.Errorf("backup_code %s = %q, want %q", k, v, want)
		}
	}
	if len(findAll(doc, func(n *html.Node) bool { v, _ := attr(n, "href"); return v == "/login/totp?flow=f" })) != 1 {
		t.Error("no link back to the TOTP step")
	}

	for _, c := range []templ.Component{
		PasswordPrompt(PasswordPromptPage{Page: page(LangJA, true), Action: "/account/2fa/setup", Purpose: "setup", Flow: "f"}),
		Disable(DisablePage{Page: page(LangJA, true), Action: "/account/2fa/disable", Flow: "f", CancelURL: "/account/2fa"}),
	} {
		_, doc := render(t, c)
		pw := input(t, doc, "password")
		if v, _ := attr(pw, "type"); v != "password" {
			t.Errorf("password type %q", v)
		}
		if v, _ := attr(pw, "autocomplete"); v != "current-password" {
			t.Errorf("password autocomplete %q", v)
		}
	}
}

func TestSetupMarkers(t *testing.T) {
	for _, lang := range []string{LangJA, LangEN} {
		_, doc := render(t, Setup(SetupPage{Page: page(lang, true), Action: "/account/2fa/setup", Flow: "f",
			QRDataURL: testQR, SetupKey: "JBSW Y3DP EHPK 3PXP"}))
		key := byID(doc, "setup-key")
		if key == nil || text(key) != "JBSW Y3DP EHPK 3PXP" {
			t.Fatalf("setup-key: %v", key)
		}
		qr := byID(doc, "setup-qr")
		if qr == nil {
			t.Fatal("no setup-qr")
		}
		imgs := findAll(qr, tag("img"))
		if len(imgs) != 1 {
			t.Fatalf("%d <img> in setup-qr", len(imgs))
		}
		if src, _ := attr(imgs[0], "src"); src != testQR {
			t.Errorf("QR src = %.60q, want the data URL", src)
		}
		if alt, _ := attr(imgs[0], "alt"); alt == "" {
			t.Error("QR without alt")
		}
	}
	// Anything but a PNG data URL is refused.
	for _, bad := range []string{"javascript:alert(1)", "data:text/html;base64,PHNjcmlwdD4=", "https://example.com/qr.png", `data:image/png;base64,x" onerror="x`} {
		if got := qrSrc(bad); got != templ.FailedSanitizationURL {
			t.Errorf("qrSrc(%q) = %q", bad, got)
		}
	}
}

func TestBackupCodeMarkers(t *testing.T) {
	codes := []BackupCode{{Code: "abcd-efgh"}, {Code: "ijkl-mnop", Used: true}, {Code: "qrst-uvwx"}, {Code: "yzab-cdef", Used: true}}
	for _, lang := range []string{LangJA, LangEN} {
		out, doc := render(t, BackupCodes(BackupCodesPage{Page: page(lang, true), Codes: codes,
			ReplaceAction: "/account/2fa/backup-codes/replace", Flow: "f"}))
		els := findAll(doc, func(n *html.Node) bool { return hasClass(n, "backup-code") })
		if len(els) != len(codes) {
			t.Fatalf("%d backup-code elements, want %d", len(els), len(codes))
		}
		for i, el := range els {
			if text(el) != codes[i].Code {
				t.Errorf("code %d text %q, want exactly %q", i, text(el), codes[i].Code)
			}
			if hasClass(el, "used") != codes[i].Used {
				t.Errorf("code %d used class = %v", i, hasClass(el, "used"))
			}
		}
		for _, c := range codes {
			want := `<code class="backup-code">` + c.Code + `</code>`
			if c.Used {
				want = `<code class="backup-code used">` + c.Code + `</code>`
			}
			if !strings.Contains(out, want) {
				t.Errorf("missing %s", want)
			}
		}
		// No other element's class starts with "backup-code".
		if n := strings.Count(out, `class="backup-code`); n != len(codes) {
			t.Errorf(`%d class="backup-code... attributes, want %d`, n, len(codes))
		}
		form := findAll(doc, func(n *html.Node) bool {
			v, _ := attr(n, "action")
			return n.Data == "form" && v == "/account/2fa/backup-codes/replace"
		})
		if len(form) != 1 {
			t.Error("no replace form")
		}
		if len(findAll(doc, func(n *html.Node) bool { v, _ := attr(n, "role"); return v == "status" })) != 0 {
			t.Error("replaced notice without Replaced")
		}
	}

	out, doc := render(t, SetupDone(SetupDonePage{Page: page(LangJA, true), Codes: []string{"abcd-efgh", "ijkl-mnop"}, TwoFAURL: "/account/2fa"}))
	els := findAll(doc, func(n *html.Node) bool { return hasClass(n, "backup-code") })
	if len(els) != 2 || text(els[0]) != "abcd-efgh" || text(els[1]) != "ijkl-mnop" || hasClass(els[0], "used") {
		t.Errorf("setup done codes: %v", els)
	}
	if strings.Contains(out, "続ける") {
		t.Error("continue link without ReturnURL")
	}
	if len(findAll(doc, func(n *html.Node) bool { v, _ := attr(n, "href"); return n.Data == "a" && v == "/account/2fa" })) != 1 {
		t.Error("no link to the 2FA settings page")
	}
}

func TestConsentButtons(t *testing.T) {
	_, doc := render(t, Consent(ConsentPage{Page: page(LangJA, false), Action: "/consent", Flow: "f", ClientName: "App", Scopes: []string{"openid", "email"}}))
	var values []string
	for _, b := range findAll(doc, tag("button")) {
		if n, _ := attr(b, "name"); n == "consent" {
			v, _ := attr(b, "value")
			values = append(values, v)
			if typ, _ := attr(b, "type"); typ != "submit" {
				t.Errorf("consent button type %q", typ)
			}
		}
	}
	if strings.Join(values, ",") != "allow,deny" {
		t.Errorf("consent buttons %v", values)
	}
	if n := len(findAll(doc, func(n *html.Node) bool { return n.Data == "li" && hasClass(n, "scope") })); n != 2 {
		t.Errorf("%d scopes listed", n)
	}
}

func TestAccountEvents(t *testing.T) {
	out, doc := render(t, Account(AccountPage{Page: page(LangEN, true), Email: "u@example.com", MFAEnabled: false, Notice: "2fa_enabled",
		Events: []AuditEntry{{When: "2024/01/02 15:04", Type: "login.failed", IP: "198.51.100.7"}, {When: "w", Type: "weird.type", Detail: "d"}}}))
	events := findAll(doc, func(n *html.Node) bool { return n.Data == "li" && hasClass(n, "audit-event") })
	if len(events) != 2 {
		t.Fatalf("%d events", len(events))
	}
	if s := text(events[0]); !strings.Contains(s, "Failed login") || !strings.Contains(s, "198.51.100.7") || !strings.Contains(s, "2024/01/02 15:04") {
		t.Errorf("event 0: %q", s)
	}
	if s := text(events[1]); !strings.Contains(s, "weird.type") || !strings.Contains(s, "d") {
		t.Errorf("event 1: %q", s)
	}
	status := findAll(doc, func(n *html.Node) bool { v, _ := attr(n, "role"); return v == "status" })
	if len(status) != 1 || text(status[0]) != T(LangEN, "2fa_enabled") {
		t.Errorf("notice: %v", status)
	}
	if len(findAll(doc, func(n *html.Node) bool { v, _ := attr(n, "href"); return n.Data == "a" && v == "/account/2fa" })) != 1 {
		t.Error("no link to /account/2fa")
	}
	if !strings.Contains(out, "Off") {
		t.Error("no status")
	}
}

// TestAppsRevokeForms: on the apps page each app has its own form posting
// its client id, whose button names the app (aria-describedby its heading).
func TestAppsRevokeForms(t *testing.T) {
	_, doc := render(t, Apps(AppsPage{Page: page(LangEN, true), RevokeAction: "/account/apps/revoke", Apps: []AppEntry{
		{ClientID: "a", Name: "App A", Scopes: []string{"openid"}}, {ClientID: "b", Name: "App B", Scopes: []string{"email"}},
	}}))
	forms := findAll(findAll(doc, tag("main"))[0], tag("form"))
	if len(forms) != 2 {
		t.Fatalf("%d forms, want 2", len(forms))
	}
	for i, want := range []struct{ client, name string }{{"a", "App A"}, {"b", "App B"}} {
		if action, _ := attr(forms[i], "action"); action != "/account/apps/revoke" {
			t.Errorf("form %d posts to %q", i, action)
		}
		client := findAll(forms[i], func(n *html.Node) bool { v, _ := attr(n, "name"); return v == "client" })
		button := findAll(forms[i], tag("button"))
		if len(client) != 1 || len(button) != 1 {
			t.Fatalf("form %d: %d client fields and %d buttons, want one each", i, len(client), len(button))
		}
		if v, _ := attr(client[0], "value"); v != want.client {
			t.Errorf("form %d: client %q, want %q", i, v, want.client)
		}
		ref, _ := attr(button[0], "aria-describedby")
		if h := byID(doc, ref); h == nil || text(h) != want.name {
			t.Errorf("form %d: the button describes %q, want the heading %q", i, ref, want.name)
		}
	}
}

func TestTwoFALinks(t *testing.T) {
	base := TwoFAPage{Page: page(LangJA, true), SetupURL: "/s", DisableURL: "/d", BackupCodesURL: "/b", RemainingCodes: 3}
	links := func(p TwoFAPage) string {
		_, doc := render(t, TwoFA(p))
		var hrefs []string
		for _, a := range findAll(findAll(doc, tag("main"))[0], tag("a")) {
			v, _ := attr(a, "href")
			hrefs = append(hrefs, v)
		}
		return strings.Join(hrefs, " ")
	}
	if got := links(base); got != "/s /account" {
		t.Errorf("off: %s", got)
	}
	base.MFAEnabled = true
	if got := links(base); got != "/b /d /account" {
		t.Errorf("on: %s", got)
	}
}

func TestLoggedOutHeader(t *testing.T) {
	out, _ := render(t, Login(LoginPage{Page: page(LangJA, false), Action: "/login", Flow: "f"}))
	if strings.Contains(out, `action="/logout"`) || strings.Contains(out, "マイページ") {
		t.Error("account links without a session")
	}
	// Default brand and no logo.
	out, doc := render(t, Message(MessagePage{Page: Page{Lang: LangJA, CSRF: "x"}, Heading: "logged_out", Message: "logged_out_text", LinkURL: "/login", LinkText: "login"}))
	if !strings.Contains(out, "<title>ログアウトしました | Camera ID</title>") {
		t.Errorf("title: %s", out)
	}
	if len(findAll(doc, func(n *html.Node) bool { return n.Data == "img" })) != 0 {
		t.Error("logo without LogoURL")
	}
	// Title override.
	out, _ = render(t, Message(MessagePage{Page: Page{Lang: LangEN, Title: "Custom", Brand: Brand{ProductName: "P"}}, Heading: "logged_out"}))
	if !strings.Contains(out, "<title>Custom | P</title>") {
		t.Errorf("title override: %s", out)
	}
}

func TestNormalizeLang(t *testing.T) {
	for in, want := range map[string]string{
		"en":                       "en",
		"en-US,en;q=0.9":           "en",
		"ja,en;q=0.5":              "ja",
		"fr, en;q=0.8":             "en",
		"":                         "ja",
		"fr":                       "ja",
		"fr en":                    "en", // ui_locales
		"en ja":                    "en",
		"ja en":                    "ja",
		"ja-JP":                    "ja",
		"EN-gb":                    "en",
		"en_US":                    "en",
		"ja;q=0.3, en;q=0.7":       "en",
		"en;q=0, ja":               "ja",
		"de;q=0.9, fr;q=0.8":       "ja",
		"zh-CN,zh;q=0.9,en;q=0.8":  "en",
		"*":                        "ja",
		"en ; q = 0.5 , ja;q=0.4":  "en",
		"ja;q=bogus, en;q=0.1":     "en",
		"  ":                       "ja",
		"fr-CA, fr;q=0.9, *;q=0.5": "ja",
	} {
		if got := NormalizeLang(in); got != want {
			t.Errorf("NormalizeLang(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestCatalogue(t *testing.T) {
	required := []string{
		"invalid_credentials", "invalid_code", "invalid_backup_code", "invalid_password", "too_many_attempts",
		"flow_expired", "csrf", "missing_fields", "not_found", "server_error", "unavailable", "invalid_request",
		"unregistered_redirect_uri", "logged_out", "logged_out_text", "login", "forgot_password", "back_to_login",
		"password_reset_unavailable", "2fa_enabled", "2fa_disabled", "codes_replaced", "mfa_reset",
		"mfa.enabled", "mfa.disabled", "mfa.reset", "mfa.backup_code_used", "mfa.codes_replaced", "mfa.codes_shown", "mfa.code_failed",
		"mfa.locked", "login.succeeded", "login.failed", "login.locked", "password.changed", "session.ended", "sessions.ended_others",
		"scope.openid", "scope.profile", "scope.email", "scope.address", "scope.phone", "scope.offline_access",
	}
	for _, k := range required {
		if !HasMessage(k) {
			t.Errorf("missing key %q", k)
		}
	}
	for k, m := range Messages {
		if m.JA == "" || m.EN == "" {
			t.Errorf("%q lacks a translation", k)
		}
		if strings.IndexFunc(m.EN, isJapanese) >= 0 {
			t.Errorf("%q: Japanese in English text %q", k, m.EN)
		}
		if strings.Count(m.JA, "%") != strings.Count(m.EN, "%") {
			t.Errorf("%q: verbs differ between ja and en", k)
		}
	}
	if got := T(LangJA, "invalid_credentials"); got != "メールアドレスまたはパスワードが正しくありません。" {
		t.Errorf("invalid_credentials = %q", got)
	}
	if got := T("", "login"); got != "ログイン" {
		t.Errorf("default language: %q", got)
	}
	if got := T("fr", "login"); got != "ログイン" {
		t.Errorf("unknown language: %q", got)
	}
	if got := T(LangEN, "login"); got != "Log in" {
		t.Errorf("en: %q", got)
	}
	if got := T(LangEN, "no.such.key"); got != "no.such.key" {
		t.Errorf("unknown key: %q", got)
	}
	if got := Tf(LangJA, "remaining_codes", 3); got != "（残り 3 個）" {
		t.Errorf("Tf: %q", got)
	}
	if got := scopeText(LangEN, "unknown_scope"); got != "unknown_scope" {
		t.Errorf("unknown scope: %q", got)
	}
}

// TestTemplateKeys checks that every constant key the .templ files pass to
// T or Tf is in the catalogue (T would otherwise show the key).
func TestTemplateKeys(t *testing.T) {
	files, err := filepath.Glob("*.templ")
	if err != nil || len(files) == 0 {
		t.Fatalf("no templ files: %v", err)
	}
	re := regexp.MustCompile(`\bTf?\([a-zA-Z.]+, "([^"]+)"`)
	seen := 0
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		for _, m := range re.FindAllStringSubmatch(string(b), -1) {
			seen++
			if !HasMessage(m[1]) {
				t.Errorf("%s: key %q not in the catalogue", f, m[1])
			}
		}
	}
	if seen < 50 {
		t.Errorf("only %d keys found; is the pattern right?", seen)
	}
}

func TestStatic(t *testing.T) {
	sub, err := fs.Sub(Static, "static")
	if err != nil {
		t.Fatal(err)
	}
	css, err := fs.ReadFile(sub, "style.css")
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"var(--brand", ":focus-visible", "@media print", ".backup-code.used", "grid-template-columns"} {
		if !bytes.Contains(css, []byte(want)) {
			t.Errorf("style.css lacks %q", want)
		}
	}
	if bytes.Contains(css, []byte("@import")) || bytes.Contains(css, []byte("url(http")) {
		t.Error("style.css loads something external")
	}
	if _, err := fs.ReadFile(sub, "app.js"); err != nil {
		t.Error(err)
	}
}

// TestCodesDownload: the completion page and the backup codes page offer the
// codes as a text file through a data: link with a download attribute (no
// JavaScript, no second request); the backup codes page's file holds only
// the unused codes.
func TestCodesDownload(t *testing.T) {
	link := func(doc *html.Node) (href, name string) {
		for _, a := range findAll(doc, tag("a")) {
			if hasClass(a, "download-codes") {
				href, _ = attr(a, "href")
				name, _ = attr(a, "download")
				return href, name
			}
		}
		t.Fatal("no download-codes link")
		return "", ""
	}
	file := func(href string) string {
		const prefix = "data:text/plain;charset=utf-8,"
		if !strings.HasPrefix(href, prefix) {
			t.Fatalf("download href %.60q is not a text data: URL", href)
		}
		s, err := url.PathUnescape(strings.TrimPrefix(href, prefix))
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	_, doc := render(t, SetupDone(SetupDonePage{Page: page(LangJA, true), Codes: []string{"abcd-efgh", "ijkl-mnop"}, TwoFAURL: "/account/2fa"}))
	href, name := link(doc)
	if name != "backup-codes.txt" {
		t.Errorf("download name %q", name)
	}
	if got := file(href); !strings.HasSuffix(got, "\r\n\r\nabcd-efgh\r\nijkl-mnop\r\n") || !strings.Contains(got, "バックアップコード") {
		t.Errorf("file:\n%s", got)
	}
	codes := []BackupCode{{Code: "abcd-efgh"}, {Code: "ijkl-mnop", Used: true}, {Code: "qrst-uvwx"}}
	_, doc = render(t, BackupCodes(BackupCodesPage{Page: page(LangEN, true), Codes: codes, ReplaceAction: "/r", Flow: "f"}))
	href, _ = link(doc)
	got := file(href)
	if !strings.HasSuffix(got, "\r\n\r\nabcd-efgh\r\nqrst-uvwx\r\n") || strings.Contains(got, "ijkl-mnop") || !strings.Contains(got, "Backup codes") {
		t.Errorf("file:\n%s", got)
	}
}

// TestNewPasswordErrorTied: after an error, the new password fields point
// at it (and at the password rules) and the first is focused; without
// one, they point at the rules only and nothing is focused.
func TestNewPasswordErrorTied(t *testing.T) {
	for _, msg := range []string{"password_too_short", ""} {
		_, doc := render(t, NewPassword(NewPasswordPage{Page: page(LangJA, false), Action: "/reset-password", Token: "tok", Error: msg}))
		for _, name := range []string{"new_password", "new_password_confirm"} {
			in := input(t, doc, name)
			described, _ := attr(in, "aria-describedby")
			want := "password-rules"
			if msg != "" {
				want = "form-error password-rules"
			}
			if described != want {
				t.Errorf("error %q: %s aria-describedby %q, want %q", msg, name, described, want)
			}
			_, focused := attr(in, "autofocus")
			if focused != (msg != "" && name == "new_password") {
				t.Errorf("error %q: %s autofocus %v", msg, name, focused)
			}
		}
	}
}

// TestOTPAuthURL: only an otpauth://totp/ URI becomes the setup page's
// link to the authenticator app.
func TestOTPAuthURL(t *testing.T) {
	for in, ok := range map[string]bool{
		"otpauth://totp/Camera%20ID:u%40example.com?secret=JBSW": true,
		"javascript:alert(1)":                false,
		"otpauth://hotp/x?secret=JBSW":       false,
		`otpauth://totp/x"onclick="alert(1)`: false,
	} {
		if got := otpauthURL(in); (got == templ.FailedSanitizationURL) == ok {
			t.Errorf("otpauthURL(%q) = %q", in, got)
		}
	}
}
