package templates

import (
	"fmt"
	"sort"
	"strconv"
	"strings"
)

// Supported languages. Japanese is the default of every page and message.
const (
	LangJA = "ja"
	LangEN = "en"
)

// Langs are the supported languages in the order the switch shows them,
// each with its own name.
var Langs = []struct{ Tag, Name string }{{LangJA, "日本語"}, {LangEN, "English"}}

// IsLang reports whether tag is a supported language, exactly ("ja", "en").
func IsLang(tag string) bool { return tag == LangJA || tag == LangEN }

// NormalizeLang picks the page language from a ui_locales value (a
// space-separated list in order of preference) or an Accept-Language header
// (a comma-separated list with optional q-values). The first supported
// language in order of preference wins; anything else gives "ja".
func NormalizeLang(s string) string {
	type pref struct {
		tag string
		q   float64
	}
	var prefs []pref
	for _, item := range strings.Split(s, ",") {
		tags, params, _ := strings.Cut(item, ";")
		q := 1.0
		for _, p := range strings.Split(params, ";") {
			k, v, ok := strings.Cut(strings.TrimSpace(p), "=")
			if !ok || !strings.EqualFold(strings.TrimSpace(k), "q") {
				continue
			}
			f, err := strconv.ParseFloat(strings.TrimSpace(v), 64)
			if err != nil || f < 0 || f > 1 {
				f = 0
			}
			q = f
		}
		// ui_locales separates tags with spaces; each keeps the item's q.
		for _, tag := range strings.Fields(tags) {
			prefs = append(prefs, pref{tag: tag, q: q})
		}
	}
	sort.SliceStable(prefs, func(i, j int) bool { return prefs[i].q > prefs[j].q })
	for _, p := range prefs {
		if p.q <= 0 {
			continue
		}
		primary, _, _ := strings.Cut(strings.ReplaceAll(p.tag, "_", "-"), "-")
		switch strings.ToLower(primary) {
		case LangJA, "*":
			return LangJA
		case LangEN:
			return LangEN
		}
	}
	return LangJA
}

// Translation is one entry of the message catalogue.
type Translation struct {
	JA string
	EN string
}

// T returns the text of key in lang ("ja" or "en"), falling back to Japanese
// and then to the key itself, so a value that is not a key (an unknown audit
// event type, a message given as plain text) is shown as it is.
func T(lang, key string) string {
	if s, ok := lookup(lang, key); ok {
		return s
	}
	return key
}

// Tf is T with fmt.Sprintf verbs in the message (e.g. "%s", "%d").
func Tf(lang, key string, args ...any) string {
	return fmt.Sprintf(T(lang, key), args...)
}

// HasMessage reports whether key is in the catalogue.
func HasMessage(key string) bool {
	_, ok := Messages[key]
	return ok
}

func lookup(lang, key string) (string, bool) {
	m, ok := Messages[key]
	if !ok {
		return "", false
	}
	if lang == LangEN && m.EN != "" {
		return m.EN, true
	}
	if m.JA != "" {
		return m.JA, true
	}
	return "", false
}

// scopeText describes an OAuth scope on the consent page; unknown scopes
// are shown by name.
func scopeText(lang, scope string) string {
	if s, ok := lookup(lang, "scope."+scope); ok {
		return s
	}
	return scope
}

// Messages is the message catalogue: message keys used by the handlers
// (errors and notices), audit event types, scope descriptions and every
// label of the pages. Japanese wording follows the service manual.
var Messages = map[string]Translation{
	// --- Errors and notices set by the handlers. ---
	"invalid_credentials": {"メールアドレスまたはパスワードが正しくありません。", "The email address or password is incorrect."},
	"account_disabled":    {"このアカウントは現在ご利用いただけません。サポート窓口にお問い合わせください。", "This account has been disabled. Please contact support."},
	"setup_restarted": {"別の画面で設定がやり直されたため、この画面のQRコードとセットアップキーは使えなくなりました。もう一度パスワードを入力して、設定をやり直してください。",
		"The setup was started again in another window, so this window's QR code and setup key no longer work. Enter your password again to start over."},
	"invalid_setup_code": {"確認コードが正しくありません。認証アプリに表示されている最新の確認コードを入力してください（認証端末の時刻設定が誤っていると認証できません）。",
		"The confirmation code is incorrect. Enter the latest code shown in your authenticator app (codes fail if the phone's clock is wrong)."},
	"invalid_code": {"認証コードが正しくありません。認証アプリに表示されている最新のコードを入力してください（認証端末の時刻設定が誤っていると認証できません）。",
		"The verification code is incorrect. Enter the code currently shown in your authenticator app (codes fail if the clock of your phone is wrong)."},
	"invalid_backup_code": {"バックアップコードが正しくないか、すでに使用されています。",
		"The backup code is incorrect or has already been used."},
	"invalid_password":  {"パスワードが正しくありません。", "The password is incorrect."},
	"too_many_attempts": {"失敗した回数が上限に達しました。しばらく時間をおいてから再度お試しください。", "Too many failed attempts. Please wait a while and try again."},
	"flow_expired": {"操作の有効期限が切れました。お手数ですが、最初からやり直してください。",
		"This page has expired. Please start again."},
	"login_restarted": {"ログインの有効期限が切れたため、最初からやり直しています。もう一度ログインしてください。",
		"Your login took too long and has been started again. Please log in again."},
	"login_restarted_changed": {"ログイン中にアカウントのパスワードまたは2段階認証の設定が変更されたため、最初からやり直しています。もう一度ログインしてください。",
		"Your account's password or two-step verification changed during this login, so it has been started again. Please log in again."},
	"csrf": {"ページの有効期限が切れたか、リクエストが正しくありません。ページを再読み込みしてから再度お試しください。",
		"The page has expired or the request was not valid. Reload the page and try again."},
	"missing_fields": {"必須項目を入力してください。", "Please fill in the required fields."},
	"not_found":      {"お探しのページが見つかりません。", "The page you are looking for was not found."},
	"server_error": {"サーバーでエラーが発生しました。しばらく時間をおいてから再度お試しください。",
		"Something went wrong on our side. Please try again later."},
	"unavailable": {"ただいまサービスをご利用いただけません。しばらく時間をおいてから再度お試しください。",
		"The service is temporarily unavailable. Please try again later."},
	"invalid_request": {"リクエストが正しくありません。", "The request is not valid."},
	// The detail of an authorization request refused with an error page
	// (by its OAuth error code, shown after it).
	"oauth_invalid_client": {"このアプリ（クライアント）は登録されていません。", "This application (client) is not registered."},
	"oauth_invalid_request": {"ログインを求めたアプリからのリクエストに誤りがあります。",
		"The request from the application that asked for the login is not valid."},
	"oauth_unauthorized_client": {"このアプリには、この方法でのログインが許可されていません。",
		"This application is not allowed to ask for a login this way."},
	// Why a request was refused before any handler read it (the detail
	// line of the error page; in English also the OAuth error_description).
	"input_no_content_type": {"リクエストの本文に Content-Type がありません。", "A request body needs a Content-Type."},
	"input_media_type": {"application/x-www-form-urlencoded 形式で送信してください。",
		"Send application/x-www-form-urlencoded."},
	"input_charset":          {"受け付ける文字コードは UTF-8 だけです。", "The only charset accepted is UTF-8."},
	"input_too_large":        {"送信された内容が大きすぎます。", "The request body is too large."},
	"input_not_form":         {"送信された内容がフォームの形式になっていません。", "The request is not a valid form."},
	"input_query_utf8":       {"URL のパラメータが UTF-8 ではありません。", "The query is not valid UTF-8."},
	"input_repeated":         {"項目 %s が重複しています。", "Parameter %s is repeated."},
	"input_repeated_unnamed": {"同じ名前の項目が重複しています。", "A parameter is repeated."},
	"input_utf8":             {"入力は UTF-8 のテキストにしてください。", "Parameters must be valid UTF-8 text."},
	"input_too_long":         {"項目 %s が長すぎます。", "Parameter %s is too long."},
	"input_too_long_unnamed": {"長すぎる項目があります。", "A parameter is too long."},
	"input_locale":           {"言語には ja か en を指定してください。", "The language must be ja or en."},
	"unregistered_redirect_uri": {"登録されていない戻り先（リダイレクトURI）が指定されました。ご利用のアプリの提供元にお問い合わせください。",
		"The return address (redirect URI) is not registered. Please contact the provider of the app you are using."},
	"logged_out": {"ログアウトしました", "You have logged out"},
	"logged_out_text": {"共用の端末をお使いの場合は、ブラウザを閉じてください。",
		"If you are using a shared device, close the browser."},
	"login":           {"ログイン", "Log in"},
	"forgot_password": {"パスワードをお忘れの方", "Forgot your password"},
	"back_to_login":   {"ログイン画面に戻る", "Back to login"},
	"password_reset_unavailable": {"現在、この画面からパスワードを再設定することはできません。お手数ですが、サポート窓口までお問い合わせください。",
		"Password reset is not available here yet. Please contact support."},
	"2fa_enabled":    {"2段階認証を設定しました。", "Two-step verification is now on."},
	"2fa_disabled":   {"2段階認証を解除しました。", "Two-step verification is now off."},
	"codes_replaced": {"バックアップコードを新しいコードに置き換えました。以前のコードは使用できません。", "Your backup codes have been replaced. The old codes no longer work."},
	"mfa_reset":      {"サポート窓口により2段階認証の設定がリセットされました。", "Your two-step verification was reset by support."},

	// --- Audit event types (My Page's recent security events). ---
	"mfa.enabled":           {"2段階認証を設定", "Two-step verification turned on"},
	"mfa.disabled":          {"2段階認証を解除", "Two-step verification turned off"},
	"mfa.reset":             {"2段階認証をリセット（サポート窓口）", "Two-step verification reset by support"},
	"user.disabled":         {"アカウントの利用を停止（サポート窓口）", "Account disabled by support"},
	"user.enabled":          {"アカウントの利用を再開（サポート窓口）", "Account enabled again by support"},
	"mfa.backup_code_used":  {"バックアップコードを使用してログイン", "Logged in with a backup code"},
	"mfa.codes_replaced":    {"バックアップコードを再発行", "Backup codes replaced"},
	"mfa.codes_shown":       {"バックアップコードを表示", "Backup codes shown"},
	"mfa.code_failed":       {"認証コードの入力に失敗", "Wrong verification code"},
	"mfa.locked":            {"2段階認証を一時的にロック", "Two-step verification temporarily locked"},
	"login.succeeded":       {"ログイン", "Logged in"},
	"login.failed":          {"ログインに失敗", "Failed login"},
	"login.locked":          {"ログインを一時的にロック", "Login temporarily locked"},
	"password.changed":      {"パスワードを変更", "Password changed"},
	"consent.revoked":       {"アプリのアクセスを取り消し", "App access removed"},
	"session.ended":         {"端末をログアウト", "A device signed out"},
	"sessions.ended_others": {"他の端末をすべてログアウト", "All other devices signed out"},

	// --- Scope descriptions (consent page). ---
	"scope.openid":         {"あなたのアカウントでのログイン（利用者の識別）", "Sign you in with your account (identify you)"},
	"scope.profile":        {"名前などのプロフィール情報", "Your profile, such as your name"},
	"scope.email":          {"メールアドレス", "Your email address"},
	"scope.address":        {"住所", "Your postal address"},
	"scope.phone":          {"電話番号", "Your phone number"},
	"scope.offline_access": {"ログアウトしている間も、引き続き上記の情報へアクセスすること", "Keep access to the above while you are logged out"},

	// --- Layout. ---
	"brand_default": {"Camera ID", "Camera ID"},
	"skip_to_main":  {"本文へ移動", "Skip to main content"},
	"my_page":       {"マイページ", "My Page"},
	"to_account":    {"マイページへ", "Go to My Page"},
	"logout":        {"ログアウト", "Log out"},

	// --- Login. ---
	"email":                {"メールアドレス", "Email address"},
	"password":             {"パスワード", "Password"},
	"remember":             {"ログインしたままにする", "Keep me logged in"},
	"forgot_password_link": {"パスワードを忘れた方はこちら", "Forgot your password?"},

	// --- Password reset and change. ---
	"forgot_password_text": {"ご登録のメールアドレスを入力してください。パスワード再設定用のリンクをお送りします。", "Enter the e-mail address of your account. We will send you a link to set a new password."},
	"send_reset_link":      {"再設定用のリンクを送信", "Send the link"},
	"reset_sent_heading":   {"メールを確認してください", "Check your e-mail"},
	"reset_sent_text": {"入力されたメールアドレスがアカウントに登録されている場合、パスワード再設定用のリンクをお送りしました。メールが届かない場合は、迷惑メールフォルダもご確認ください。",
		"If the address belongs to an account, we have sent it a link to set a new password. If no e-mail arrives, check your spam folder."},
	"reset_password_heading":  {"新しいパスワードの設定", "Set a new password"},
	"change_password_heading": {"パスワードの変更", "Change your password"},
	"current_password":        {"現在のパスワード", "Current password"},
	"new_password":            {"新しいパスワード", "New password"},
	"new_password_confirm":    {"新しいパスワード（確認）", "New password (again)"},
	"change_password":         {"パスワードを変更", "Change password"},
	"password_rules": {"8文字以上128文字以内で入力してください。よく使われるパスワードやメールアドレスと同じものは使用できません。",
		"Use 8 to 128 characters. Commonly used passwords and your e-mail address are not allowed."},
	"password_too_short":         {"パスワードは8文字以上で入力してください。", "The password must have at least 8 characters."},
	"password_too_long":          {"パスワードは128文字以内で入力してください。", "The password must have at most 128 characters."},
	"password_too_common":        {"このパスワードはよく使われているため使用できません。別のパスワードを入力してください。", "This password is too commonly used. Please choose another one."},
	"password_is_email":          {"メールアドレスと同じパスワードは使用できません。", "The password must not be your e-mail address."},
	"password_mismatch":          {"新しいパスワードと確認用のパスワードが一致しません。", "The two new passwords do not match."},
	"reset_link_invalid_heading": {"このリンクは使用できません", "This link cannot be used"},
	"reset_link_invalid": {"パスワード再設定用のリンクが無効か、有効期限が切れているか、すでに使用されています。お手数ですが、もう一度再設定をお申し込みください。",
		"The password reset link is not valid, has expired or has already been used. Please ask for a new one."},
	"request_new_link":         {"再設定をもう一度申し込む", "Ask for a new link"},
	"reset_done_heading":       {"パスワードを再設定しました", "Your password has been reset"},
	"reset_done_text":          {"新しいパスワードでログインしてください。安全のため、すべての端末でログアウトしました。", "Log in with your new password. For your safety, you have been logged out everywhere."},
	"password_changed":         {"パスワードを変更しました。他の端末からはログアウトしました。", "Your password has been changed. You have been logged out on other devices."},
	"locale_changed":           {"言語を変更しました。お知らせメールもこの言語でお送りします。", "Your language has been changed. Notification e-mails will be in this language too."},
	"password.reset_requested": {"パスワード再設定を申し込み", "Password reset requested"},
	"password.reset":           {"パスワードを再設定（メール）", "Password reset by e-mail"},

	// --- Sessions. ---
	"sessions_heading":  {"ログイン中の端末", "Signed-in devices"},
	"sessions_text":     {"このアカウントにログインしている端末の一覧です。心当たりのない端末はログアウトさせてください。", "These devices are signed in to your account. Sign out any you do not recognise."},
	"this_device":       {"この端末", "This device"},
	"last_seen":         {"最終利用", "Last active"},
	"sign_out_session":  {"ログアウトさせる", "Sign out"},
	"sign_out_others":   {"この端末以外をすべてログアウト", "Sign out all other devices"},
	"session_revoked":   {"端末をログアウトさせました。", "The device has been signed out."},
	"sessions_revoked":  {"この端末以外をすべてログアウトさせました。", "All other devices have been signed out."},
	"unknown_device":    {"不明な端末", "Unknown device"},
	"password_settings": {"パスワードの変更", "Change password"},
	"login_to":          {"%s にログイン", "Log in to %s"},

	// --- Apps with access to the account. ---
	"apps_heading": {"アクセスを許可したアプリ", "Apps with access to your account"},
	"apps_text": {"あなたのアカウントの情報へのアクセスを許可したアプリの一覧です。アクセスを取り消すと、そのアプリはすぐにあなたの情報を利用できなくなり、次に利用するときに改めて許可を求めます。",
		"These apps may use information from your account. If you remove an app's access, it loses it at once and has to ask you again next time."},
	"no_apps":        {"アクセスを許可したアプリはありません。", "No app has access to your account."},
	"app_scopes":     {"許可している情報", "Allowed"},
	"app_granted_at": {"許可した日時", "Allowed on"},
	"revoke_app":     {"アクセスを取り消す", "Remove access"},
	"app_revoked":    {"アプリのアクセスを取り消しました。", "The app's access has been removed."},
	"apps_own_note": {"このサービス自身のアプリはここには表示されません。それらからログアウトするには、次のページをご利用ください。",
		"The service's own apps are not listed here. To sign out of them, use this page:"},

	// --- Second step at login. ---
	"totp_heading":      {"2段階認証コード入力", "Two-step verification code"},
	"totp_text":         {"認証システムアプリから確認コードを取得して入力してください。", "Get a verification code from your authenticator app and enter it."},
	"totp_label":        {"認証コード", "Verification code"},
	"totp_hint":         {"確認コードは30秒ごとに更新されます。表示されているコードが更新される前に入力してください。", "The code changes every 30 seconds. Enter it before it changes."},
	"verify":            {"認証する", "Verify"},
	"or":                {"または", "or"},
	"use_backup_code":   {"バックアップコードを使用してログイン", "Log in with a backup code"},
	"backup_heading":    {"バックアップコード入力", "Backup code"},
	"backup_text":       {"認証コードがわからない場合、バックアップコードでもログイン可能です。", "If you cannot get a verification code, you can log in with a backup code."},
	"backup_label":      {"バックアップコード", "Backup code"},
	"backup_login_hint": {"各バックアップコードは1度しか使用できません。", "Each backup code works only once."},
	"back_to_totp":      {"認証コード入力画面に戻る", "Back to the verification code"},

	// --- Few backup codes left. ---
	"low_codes_heading": {"バックアップコードの残りが少なくなっています", "You are running out of backup codes"},
	"low_codes_text":    {"未使用のバックアップコードは残り %d 個です。新しいバックアップコードを発行することをおすすめします。", "You have %d unused backup codes left. We recommend getting a new set."},
	"low_codes_none":    {"未使用のバックアップコードは残っていません。新しいバックアップコードを発行してください。", "You have no unused backup codes left. Please get a new set."},
	"issue_new_codes":   {"新しいバックアップコードを発行", "Get new backup codes"},
	"continue_as_is":    {"このまま続ける", "Continue without new codes"},

	// --- Consent. ---
	"consent_title":   {"アクセスの許可", "Allow access"},
	"consent_heading": {"%s があなたのアカウントへのアクセスを求めています", "%s wants to access your account"},
	"consent_text":    {"許可すると、このアプリは次の情報を利用できるようになります。", "If you allow it, this app will be able to use:"},
	"consent_app":     {"アプリ", "An app"},
	"allow":           {"許可する", "Allow"},
	"deny":            {"拒否する", "Deny"},

	// --- Account selection (prompt=select_account). ---
	"select_account_title":  {"アカウントの選択", "Choose an account"},
	"select_account_for":    {"%s で使用するアカウントを選択してください。", "Choose the account to use with %s."},
	"select_account_text":   {"使用するアカウントを選択してください。", "Choose the account to use."},
	"signed_in_as":          {"ログイン中のアカウント", "Logged in as"},
	"continue_with_account": {"このアカウントで続ける", "Continue with this account"},
	"use_another_account":   {"別のアカウントでログイン", "Log in with another account"},

	// --- Error and message pages. ---
	"error_title":  {"エラー", "Error"},
	"error_status": {"エラーコード: %d", "Error code: %d"},
	"request_id":   {"リクエストID: %s", "Request ID: %s"},
	"back":         {"戻る", "Back"},

	// --- Logout confirmation. ---
	"logout_heading":     {"ログアウトしますか？", "Do you want to log out?"},
	"logout_from_client": {"%s からログアウトを求められています。", "%s asked to log you out."},
	"logout_text":        {"ログアウトすると、このブラウザでのログイン状態が終了します。", "Logging out ends your session in this browser."},
	"cancel":             {"キャンセル", "Cancel"},
	"save":               {"保存する", "Save"},

	// --- My Page. ---
	"account_heading":       {"マイページ", "My Page"},
	"user_info":             {"ユーザー情報", "Your details"},
	"account_language_hint": {"画面とお知らせメールの言語です。", "For these pages and notification e-mails."},
	"name":                  {"名前", "Name"},
	"account_section":       {"アカウント", "Account"},
	"language":              {"言語", "Language"},
	"settings":              {"設定", "Settings"},
	"twofa_settings":        {"2段階認証設定", "Two-step verification settings"},
	"enabled":               {"有効", "On"},
	"disabled":              {"無効", "Off"},
	"status":                {"状態", "Status"},
	"recent_events":         {"最近のセキュリティイベント", "Recent security events"},
	"no_events":             {"記録はありません。", "Nothing recorded yet."},
	"event_when":            {"日時", "When"},
	"event_ip":              {"IPアドレス", "IP address"},
	"back_to_account":       {"マイページに戻る", "Back to My Page"},
	"twofa_intro":           {"ご利用のアカウントに、パスワード以外の認証方法を追加することで不正アクセスを防ぎます。", "Add a second way to confirm it is you, besides your password, to protect your account from unauthorised access."},
	"twofa_off_text":        {"2段階認証は設定されていません。", "Two-step verification is not set up."},
	"twofa_on_text":         {"2段階認証が設定されています。ログイン時に認証アプリの確認コードが必要です。", "Two-step verification is on. You will need a code from your authenticator app when you log in."},
	"setup":                 {"設定", "Set up"},
	"disable":               {"解除", "Turn off"},
	"show_backup_codes":     {"バックアップコードを表示", "Show backup codes"},
	"remaining_codes":       {"（残り %d 個）", "(%d left)"},
	"low_codes_warning":     {"未使用のバックアップコードが少なくなっています。新しいコードの発行をおすすめします。", "You are running out of unused backup codes. We recommend getting a new set."},
	"back_to_twofa":         {"2段階認証設定に戻る", "Back to two-step verification settings"},
	"twofa_settings_nav":    {"2段階認証設定", "Two-step verification"},

	// --- Password re-entry. ---
	"setup_heading":          {"2段階認証の設定", "Set up two-step verification"},
	"setup_password_text":    {"本人確認のため、ビューアにログインする際に使用するパスワードを入力し「送信」をクリックしてください。", "To confirm it is you, enter the password you use to log in and click Submit."},
	"codes_heading_prompt":   {"バックアップコードの表示", "Show backup codes"},
	"codes_password_text":    {"バックアップコードを表示するには、本人確認のためアカウントのパスワードを入力し「送信」をクリックしてください。", "To see your backup codes, confirm it is you: enter your account password and click Submit."},
	"password_prompt_title":  {"パスワードの確認", "Confirm your password"},
	"password_prompt_text":   {"本人確認のため、アカウントのパスワードを入力してください。", "To confirm it is you, enter your account password."},
	"submit":                 {"送信", "Submit"},
	"setup_step1":            {"手順1: 認証アプリのインストール", "Step 1: Install an authenticator app"},
	"setup_intro":            {"ご利用のアカウントに、パスワード以外の認証方法を追加することで不正アクセスを防ぎます。以下の手順で設定してください。", "Add a second way to confirm it is you, besides your password, to protect your account from unauthorised access. Follow the steps below."},
	"setup_step1_text":       {"認証端末（スマートフォン）に認証アプリをインストールしてください。iOSでは「Google Authenticator」、Androidでは「Google認証システム」をご利用ください。", "Install an authenticator app on your phone: Google Authenticator (iOS or Android)."},
	"app_store":              {"App Store（iOS）", "App Store (iOS)"},
	"google_play":            {"Google Play（Android）", "Google Play (Android)"},
	"setup_clock_note":       {"※認証端末の時刻設定が誤っていると2段階認証が正しく動作しません。必ず正しい時刻設定を行ってご利用ください。", "Note: two-step verification does not work if the clock of your phone is wrong. Make sure it is set correctly."},
	"setup_step2":            {"手順2: 認証アプリへの登録", "Step 2: Add your account to the app"},
	"setup_step2_text":       {"認証アプリを起動し下のQRコードを読み込んでください", "Open the authenticator app and scan the QR code below"},
	"qr_alt":                 {"認証アプリに登録するためのQRコード", "QR code to add your account to the authenticator app"},
	"open_in_app":            {"この端末の認証アプリで開く（この端末が認証端末の場合）", "Open in the authenticator app on this device (if this device is your authenticator)"},
	"setup_key_text":         {"QRコードを読み込めない場合は下記のセットアップキーを入力してください", "If you cannot scan the QR code, enter the setup key below"},
	"setup_key_label":        {"セットアップキー", "Setup key"},
	"copy":                   {"コピー", "Copy"},
	"copied":                 {"コピーしました", "Copied"},
	"setup_step3":            {"手順3: 確認コードの入力", "Step 3: Enter the verification code"},
	"setup_step3_text":       {"認証アプリに表示された確認コードを入力し送信してください", "Enter the verification code shown in the authenticator app and submit it"},
	"setup_code_label":       {"確認コード", "Verification code"},
	"setup_done_heading":     {"2段階認証設定の完了", "Two-step verification is set up"},
	"about_backup_codes":     {"バックアップコードについて", "About backup codes"},
	"backup_codes_warning":   {"2段階認証機器紛失時には以下のバックアップコードを使用することでログイン可能です。各コードは1度しか使用することはできません。万が一に備えて、これらのコードをすぐに使える状態で安全な場所に保管しておいてください。", "If you lose your authenticator device, you can log in with one of the backup codes below. Each code works only once. Keep them somewhere safe where you can find them when you need them."},
	"backup_codes_see_again": {"※バックアップコードは2段階認証の設定ページからご確認ください。", "You can see the backup codes again on the two-step verification settings page."},
	"to_twofa_page":          {"2段階認証の設定ページへ", "Go to two-step verification settings"},
	"continue":               {"続ける", "Continue"},
	"print":                  {"印刷", "Print"},
	"download_codes":         {"テキストファイルでダウンロード", "Download as a text file"},
	"codes_file_name":        {"backup-codes.txt", "backup-codes.txt"},
	"codes_file_intro":       {"各コードは1度しか使用できません。安全な場所に保管してください。", "Each code works only once. Keep them somewhere safe."},

	// --- Backup codes page. ---
	"backup_codes_heading": {"バックアップコード", "Backup codes"},
	"backup_codes_text":    {"各コードは1度しか使用することはできません。使用済みのコードには「使用済み」と表示されます。", "Each code works only once. Used codes are marked as used."},
	"unused_codes":         {"未使用のコード: %d 個", "Unused codes: %d"},
	"used":                 {"使用済み", "used"},
	"replace_heading":      {"新しいコードへの置き換え", "Replace the codes"},
	"replace_text":         {"置き換えると、現在のバックアップコードはすべて使用できなくなります。", "After replacing, none of the current backup codes will work."},
	"replace_all":          {"すべて新しいコードに置き換える", "Replace all with new codes"},

	// --- Turning 2FA off. ---
	"disable_heading": {"2段階認証の解除", "Turn off two-step verification"},
	"disable_section_text": {"解除すると、ログインはパスワードのみになります。",
		"Once it is off, logging in needs only your password."},
	"disable_text": {"2段階認証を解除をします。ユーザーアカウントのパスワードを入力し解除ボタンを押してください。", "You are turning off two-step verification. Enter your account password and press Turn off."},
}
