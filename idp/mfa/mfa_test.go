package mfa

import (
	"bytes"
	"encoding/base64"
	"errors"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/pquerna/otp"
	"github.com/pquerna/otp/totp"

	"github.com/kamera-id/idp/idp/crypt"
)

func testKey(t testing.TB) *crypt.Key {
	k, err := crypt.ParseKey(base64.StdEncoding.EncodeToString(bytes.Repeat([]byte{1}, 32)))
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func TestSecretAndURI(t *testing.T) {
	s, err := NewSecret()
	if err != nil {
		t.Fatal(err)
	}
	raw, err := b32.DecodeString(s)
	if err != nil || len(raw) != 20 {
		t.Fatalf("secret %q: %d bytes, %v", s, len(raw), err)
	}
	// Spaces as %20 (a + is a plus to the apps), and the address's own
	// characters escaped so that the label splits at its one colon.
	uri := KeyURI("Camera ID", "a+b/c:d@example.com", s)
	if want := "otpauth://totp/Camera%20ID:a%2Bb%2Fc%3Ad@example.com?secret=" + s +
		"&issuer=Camera%20ID&algorithm=SHA1&digits=6&period=30"; uri != want {
		t.Fatalf("KeyURI =\n %s\nwant\n %s", uri, want)
	}
	u, err := url.Parse(uri)
	if err != nil {
		t.Fatal(err)
	}
	if u.Scheme != "otpauth" || u.Host != "totp" || u.Path != "/Camera ID:a+b/c:d@example.com" {
		t.Fatalf("uri %v", u)
	}
	if q := u.Query(); q.Get("secret") != s || q.Get("issuer") != "Camera ID" {
		t.Fatalf("query %v", q)
	}
	// pquerna/otp's own URI for the same key reads the same.
	k, err := otp.NewKeyFromURL(uri)
	if err != nil || k.Issuer() != "Camera ID" || k.AccountName() != "a+b/c:d@example.com" || k.Secret() != s {
		t.Fatalf("pquerna/otp reads issuer %q, account %q: %v", k.Issuer(), k.AccountName(), err)
	}
	if g := GroupKey("ABCDEFGHIJ"); g != "ABCD EFGH IJ" {
		t.Fatalf("GroupKey = %q", g)
	}
	png, err := QRCodePNG(KeyURI("x", "y", s), 256)
	if err != nil || !bytes.HasPrefix(png, []byte("\x89PNG")) {
		t.Fatalf("QR: %v", err)
	}
}

func TestVerify(t *testing.T) {
	secret, _ := NewSecret()
	now := time.Unix(1_700_000_015, 0)
	step := StepAt(now)
	code := func(s int64) string { c, _ := CodeAt(secret, s); return c }

	// Interoperates with pquerna/otp's own TOTP (what authenticator apps do).
	if want, _ := totp.GenerateCode(secret, now); want != code(step) {
		t.Fatalf("CodeAt = %s, totp = %s", code(step), want)
	}
	for _, d := range []int64{-1, 0, 1} {
		got, err := Verify(secret, code(step+d), now, 0)
		if err != nil || got != step+d {
			t.Errorf("drift %d: step %d, %v", d, got, err)
		}
	}
	for _, d := range []int64{-2, 2} {
		if _, err := Verify(secret, code(step+d), now, 0); !errors.Is(err, ErrInvalidCode) {
			t.Errorf("drift %d accepted: %v", d, err)
		}
	}
	if _, err := Verify(secret, code(step), now, step); !errors.Is(err, ErrReplay) {
		t.Errorf("replay of the last step: %v", err)
	}
	if _, err := Verify(secret, code(step-1), now, step-1); !errors.Is(err, ErrReplay) {
		t.Errorf("earlier step: %v", err)
	}
	if got, err := Verify(secret, code(step+1), now, step); err != nil || got != step+1 {
		t.Errorf("next step after last: %d %v", got, err)
	}
	c := code(step)
	if _, err := Verify(secret, c[:3]+" "+c[3:], now, 0); err != nil {
		t.Errorf("spaced code: %v", err)
	}
	// As a Japanese IME types it: full-width digits, a full-width space.
	wide := strings.Map(func(r rune) rune { return r - '0' + '０' }, c)
	if _, err := Verify(secret, string([]rune(wide)[:3])+"\u3000"+string([]rune(wide)[3:]), now, 0); err != nil {
		t.Errorf("full-width code %q: %v", wide, err)
	}
	for _, bad := range []string{"", "12345", "1234567", "abcdef"} {
		if _, err := Verify(secret, bad, now, 0); !errors.Is(err, ErrInvalidCode) {
			t.Errorf("Verify(%q) = %v", bad, err)
		}
	}
}

func TestBackupCodes(t *testing.T) {
	codes, err := GenerateBackupCodes(BackupCodeCount)
	if err != nil || len(codes) != 10 {
		t.Fatal(err)
	}
	seen := map[string]bool{}
	for _, c := range codes {
		if n, ok := NormalizeBackupCode(c); !ok || n != c {
			t.Fatalf("canonical %q not normal", c)
		}
		f := FormatBackupCode(c)
		if len(f) != 11 || f[5] != '-' {
			t.Fatalf("format %q", f)
		}
		for _, typed := range []string{f, strings.ToUpper(f), " " + strings.ToUpper(c) + " ", f[:5] + " " + f[6:]} {
			if n, ok := NormalizeBackupCode(typed); !ok || n != c {
				t.Errorf("NormalizeBackupCode(%q) = %q, %v", typed, n, ok)
			}
		}
		seen[c] = true
	}
	if len(seen) != 10 {
		t.Fatal("duplicate codes")
	}
	if n, ok := NormalizeBackupCode("ABCDE-FGHOI"); !ok || n != "abcdefgh01" {
		t.Errorf("look-alikes: %q %v", n, ok)
	}
	if n, ok := NormalizeBackupCode("１２３４５ａｂｃｄｅ"); !ok || n != "12345abcde" {
		t.Errorf("full width: %q %v", n, ok)
	}
	// What a Japanese IME or a copy from a document puts between the groups,
	// and full-width look-alikes.
	for _, typed := range []string{"ABCDE－FGHJK", "ａｂｃｄｅ－ｆｇｈｊｋ", "abcde–fghjk", "abcde—fghjk", "abcdeーfghjk",
		"abcdeｰfghjk", "abcde\u00a0fghjk", "ＡＢＣＤＥ\u3000ＦＧＨＪＫ"} {
		if n, ok := NormalizeBackupCode(typed); !ok || n != "abcdefghjk" {
			t.Errorf("NormalizeBackupCode(%q) = %q, %v; want abcdefghjk", typed, n, ok)
		}
	}
	if n, ok := NormalizeBackupCode("ａｂｃｄｅ－ｆｇｈｏｉ"); !ok || n != "abcdefgh01" {
		t.Errorf("full-width look-alikes: %q %v", n, ok)
	}
	for _, bad := range []string{"", "abcd", "abcde-fghjkm", "abcde-fgh!k", strings.Repeat("a", 100)} {
		if _, ok := NormalizeBackupCode(bad); ok {
			t.Errorf("NormalizeBackupCode(%q) accepted", bad)
		}
	}
}

func TestSealing(t *testing.T) {
	k := testKey(t)
	enc := SealSecret(k, "u1", "SECRET")
	if bytes.Contains(enc, []byte("SECRET")) {
		t.Fatal("plaintext in ciphertext")
	}
	if s, err := OpenSecret(k, "u1", enc); err != nil || s != "SECRET" {
		t.Fatalf("OpenSecret = %q %v", s, err)
	}
	if _, err := OpenSecret(k, "u2", enc); err == nil {
		t.Fatal("secret opened for another user")
	}
	codes, _ := GenerateBackupCodes(3)
	recs := SealBackupCodes(k, "u1", codes)
	for i, r := range recs {
		if r.Position != i || !bytes.Equal(r.Hash, BackupCodeHash(k, "u1", codes[i])) || bytes.Contains(r.Enc, []byte(codes[i])) {
			t.Fatalf("record %d: %+v", i, r)
		}
	}
	if bytes.Equal(BackupCodeHash(k, "u1", codes[0]), BackupCodeHash(k, "u2", codes[0])) {
		t.Fatal("hash not bound to the user")
	}
	plain, err := OpenBackupCodes(k, "u1", recs)
	if err != nil || strings.Join(plain, ",") != strings.Join(codes, ",") {
		t.Fatalf("OpenBackupCodes = %v %v", plain, err)
	}
	if _, err := OpenBackupCodes(k, "u2", recs); err == nil {
		t.Fatal("codes opened for another user")
	}
}

func FuzzNormalizeBackupCode(f *testing.F) {
	for _, s := range []string{"abcde-fghjk", "ABCDE FGHJK", "１２３４５ａｂｃｄｅ", "", "\xff\xfe", "ーーー"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, in string) {
		n, ok := NormalizeBackupCode(in)
		if !ok {
			return
		}
		if len(n) != backupLen {
			t.Fatalf("normal form %q has length %d", n, len(n))
		}
		for _, r := range n {
			if !strings.ContainsRune(backupAlphabet, r) {
				t.Fatalf("normal form %q has %q", n, r)
			}
		}
		if again, ok := NormalizeBackupCode(FormatBackupCode(n)); !ok || again != n {
			t.Fatalf("not idempotent: %q -> %q", n, again)
		}
	})
}

func BenchmarkVerifyTOTP(b *testing.B) {
	secret, _ := NewSecret()
	now := time.Now()
	code, _ := CodeAt(secret, StepAt(now)+1)
	for b.Loop() {
		if _, err := Verify(secret, code, now, 0); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkBackupCodeHash is the CPU part of a backup code check: the
// typed code normalised and its keyed hash (the store then uses it up in
// one statement; see storetest's BackupCodeCheck).
func BenchmarkBackupCodeHash(b *testing.B) {
	k, _ := crypt.ParseKey(base64.StdEncoding.EncodeToString(bytes.Repeat([]byte{5}, 32)))
	codes, _ := GenerateBackupCodes(1)
	typed := strings.ToUpper(FormatBackupCode(codes[0]))
	for b.Loop() {
		c, ok := NormalizeBackupCode(typed)
		if !ok {
			b.Fatal("normalize")
		}
		_ = BackupCodeHash(k, "user-id-0123456789", c)
	}
}
