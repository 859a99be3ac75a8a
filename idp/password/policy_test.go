package password

import (
	"strings"
	"testing"
)

func TestProblem(t *testing.T) {
	for _, tc := range []struct{ pw, email, want string }{
		{"short", "", ProblemTooShort},
		{"1234567", "", ProblemTooShort},
		{"パスワード", "", ProblemTooShort}, // five characters, fifteen bytes
		{strings.Repeat("a", 129), "", ProblemTooLong},
		{strings.Repeat("ab", 64), "", ""},
		{"password", "", ProblemCommon},
		{"PassWord123", "", ProblemCommon},
		{"qwertyuiop", "", ProblemCommon},
		{"taro.yamada@example.com", "Taro.Yamada@example.com", ProblemEmail},
		{"taro.yamada", "taro.yamada@example.com", ProblemEmail},
		{"correct horse battery", "taro@example.com", ""},
		{"ながいパスワードです", "", ""},
	} {
		if got := Problem(tc.pw, tc.email); got != tc.want {
			t.Errorf("Problem(%q, %q) = %q, want %q", tc.pw, tc.email, got, tc.want)
		}
	}
	if len(common) < 300 {
		t.Errorf("common list has %d entries", len(common))
	}
}
