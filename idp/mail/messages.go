package mail

import (
	"fmt"
	"strings"
	"time"
)

// Message is a composed mail: subject and plain-text body.
type Message struct {
	Subject string
	Body    string
	// ExpiresAt is when the message stops being of use (a reset link's
	// expiry; zero: never): the outbox gives it up if it could not be sent
	// by then.
	ExpiresAt time.Time
}

// Notice is what a security e-mail says.
type Notice struct {
	Lang    string    // "en" for English; anything else is Japanese
	Product string    // the product name in the greeting; empty: a default
	When    time.Time // when it happened (shown in JST)
	IP      string    // where from, when known
	// Remaining is the number of unused backup codes (BackupCodeUsed).
	Remaining int
	// Link and Valid are the reset link and how long it works (ResetRequested).
	Link  string
	Valid time.Duration
	// AccountURL is My Page, for "if this was not you".
	AccountURL string
}

// The security e-mails.
const (
	MFAEnabled      = "mfa_enabled"
	MFADisabled     = "mfa_disabled"
	MFAReset        = "mfa_reset"
	BackupCodeUsed  = "backup_code_used"
	CodesReplaced   = "backup_codes_replaced"
	CodesShown      = "backup_codes_shown"
	PasswordChanged = "password_changed"
	PasswordReset   = "password_reset"
	ResetRequested  = "password_reset_requested"
)

type text struct{ subject, lead string }

var texts = map[string][2]text{
	MFAEnabled: {
		{"2段階認証が有効になりました", "お客様のアカウントで2段階認証が有効になりました。今後のログインでは、パスワードに加えて認証アプリの確認コードが必要です。"},
		{"Two-step verification was turned on", "Two-step verification was turned on for your account. From now on, logging in needs a code from your authenticator app as well as your password."},
	},
	MFADisabled: {
		{"2段階認証が解除されました", "お客様のアカウントで2段階認証が解除されました。今後のログインはパスワードのみで行えます。"},
		{"Two-step verification was turned off", "Two-step verification was turned off for your account. Logging in now needs only your password."},
	},
	MFAReset: {
		{"サポートにより2段階認証がリセットされました", "お客様のご依頼により、サポート窓口でアカウントの2段階認証（認証アプリとバックアップコード）をリセットしました。安全のため、すべての端末でログアウトしました。次回ログイン後、マイページから2段階認証を再度設定してください。"},
		{"Support reset your two-step verification", "At your request, our support desk reset the two-step verification of your account (authenticator app and backup codes). For your safety, you were logged out everywhere. After your next login, set up two-step verification again on My Page."},
	},
	BackupCodeUsed: {
		{"バックアップコードでログインしました", "お客様のアカウントにバックアップコードでログインしました。"},
		{"A backup code was used to log in", "Someone logged in to your account with a backup code."},
	},
	CodesReplaced: {
		{"バックアップコードが再発行されました", "お客様のアカウントのバックアップコードが新しいコードに置き換えられました。以前のバックアップコードは使用できません。"},
		{"Your backup codes were replaced", "The backup codes of your account were replaced with a new set. The old backup codes no longer work."},
	},
	CodesShown: {
		{"バックアップコードが表示されました", "マイページでパスワードが入力され、お客様のアカウントのバックアップコードが表示されました。お心当たりがない場合は、パスワードを変更し、バックアップコードを再発行してください。"},
		{"Your backup codes were shown", "Your password was entered on My Page and the backup codes of your account were shown. If this was not you, change your password and replace your backup codes."},
	},
	PasswordChanged: {
		{"パスワードが変更されました", "お客様のアカウントのパスワードが変更されました。安全のため、すべての端末でログアウトしました（変更を行った端末を除く）。"},
		{"Your password was changed", "The password of your account was changed. For your safety, you were logged out everywhere (except on the device that made the change)."},
	},
	// A reset ends every session, the resetting browser's too.
	PasswordReset: {
		{"パスワードが変更されました", "お客様のアカウントのパスワードが、パスワード再設定のリンクから変更されました。安全のため、すべての端末でログアウトしました。"},
		{"Your password was changed", "The password of your account was changed through a password reset link. For your safety, you were logged out everywhere."},
	},
	ResetRequested: {
		{"パスワード再設定のご案内", "パスワード再設定のリクエストを受け付けました。下記のリンクから新しいパスワードを設定してください。"},
		{"Reset your password", "We received a request to reset your password. Use the link below to set a new one."},
	},
}

// Compose writes the security e-mail of kind in the notice's language.
func Compose(kind string, n Notice) Message {
	en := n.Lang == "en"
	i := 0
	if en {
		i = 1
	}
	t, ok := texts[kind]
	if !ok {
		panic("mail: unknown kind " + kind)
	}
	product := n.Product
	if product == "" {
		product = "Camera ID"
	}
	var b strings.Builder
	line := func(s string) { b.WriteString(s + "\n") }
	if en {
		line("Hello,")
	} else {
		line("いつもご利用いただきありがとうございます。")
	}
	line("")
	line(t[i].lead)
	line("")
	switch kind {
	case BackupCodeUsed:
		if en {
			line(fmt.Sprintf("Unused backup codes left: %d", n.Remaining))
		} else {
			line(fmt.Sprintf("未使用のバックアップコードの残り: %d 個", n.Remaining))
		}
		if n.Remaining <= 2 {
			line("")
			if en {
				line("Warning: you are running out of backup codes. Get a new set on My Page (two-step verification settings) so that you can still log in if you lose your phone.")
			} else {
				line("【ご注意】バックアップコードの残りが少なくなっています。認証端末を紛失してもログインできるよう、マイページの2段階認証設定から新しいバックアップコードを発行してください。")
			}
		}
		line("")
	case ResetRequested:
		line(n.Link)
		line("")
		mins := int(n.Valid.Minutes())
		if en {
			line(fmt.Sprintf("The link works once, for %d minutes. After you set a new password, you are logged out everywhere. If two-step verification is on, it stays on.", mins))
			line("")
			line("If you did not ask for this, ignore this e-mail: your password stays as it is.")
		} else {
			line(fmt.Sprintf("このリンクの有効期限は%d分で、1回のみ使用できます。新しいパスワードを設定すると、すべての端末でログアウトします。2段階認証を設定している場合、設定はそのまま有効です。", mins))
			line("")
			line("お心当たりがない場合は、このメールを破棄してください。パスワードは変更されません。")
		}
		line("")
	}
	if !n.When.IsZero() {
		when := n.When.In(time.FixedZone("JST", 9*3600)).Format("2006/01/02 15:04 MST")
		if en {
			line("When: " + when)
		} else {
			line("日時: " + when)
		}
	}
	if n.IP != "" {
		if en {
			line("IP address: " + n.IP)
		} else {
			line("IPアドレス: " + n.IP)
		}
	}
	if kind != ResetRequested {
		line("")
		if en {
			line("If this was not you, change your password at once and contact support.")
		} else {
			line("お心当たりがない場合は、ただちにパスワードを変更し、サポート窓口までお問い合わせください。")
		}
		if n.AccountURL != "" {
			line(n.AccountURL)
		}
	}
	line("")
	line("-- ")
	line(product)
	if en {
		line("This e-mail was sent automatically. Replies are not read.")
	} else {
		line("このメールは送信専用です。ご返信いただいてもお答えできません。")
	}
	m := Message{Subject: "[" + product + "] " + t[i].subject, Body: b.String()}
	if kind == ResetRequested && !n.When.IsZero() {
		m.ExpiresAt = n.When.Add(n.Valid)
	}
	return m
}
