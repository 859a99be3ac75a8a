package password

import (
	_ "embed"
	"strings"
	"unicode/utf8"
)

// The password rules (NIST SP 800-63B): length, and not a commonly used
// value; no composition rules.
const (
	MinLen = 8
	MaxLen = 128
)

//go:embed common.txt
var commonText string

var common = func() map[string]bool {
	m := map[string]bool{}
	for _, l := range strings.Split(commonText, "\n") {
		if l = strings.TrimSpace(l); l != "" && !strings.HasPrefix(l, "#") {
			m[strings.ToLower(l)] = true
		}
	}
	return m
}()

// Rule violations; each is also a message key of the hosted pages.
const (
	ProblemTooShort = "password_too_short"
	ProblemTooLong  = "password_too_long"
	ProblemCommon   = "password_too_common"
	ProblemEmail    = "password_is_email"
)

// Problem returns the first rule a new password breaks ("" for none).
// email is the account's address, which the password must not be (nor
// its local part).
func Problem(pw, email string) string {
	n := utf8.RuneCountInString(pw)
	switch {
	case !utf8.ValidString(pw) || n < MinLen:
		return ProblemTooShort
	case n > MaxLen:
		return ProblemTooLong
	}
	lower := strings.ToLower(pw)
	if common[lower] {
		return ProblemCommon
	}
	if email = strings.ToLower(strings.TrimSpace(email)); email != "" {
		local, _, _ := strings.Cut(email, "@")
		if lower == email || (len(local) >= 4 && lower == local) {
			return ProblemEmail
		}
	}
	return ""
}
