package mfa

import (
	"crypto/rand"
	"fmt"
	"strings"
	"unicode"

	"github.com/kamera-id/idp/idp/crypt"
	"github.com/kamera-id/idp/idp/store"
)

// BackupCodeCount is how many codes a set has.
const BackupCodeCount = 10

// backupAlphabet is Crockford's base32 in lower case: no i, l, o or u, so a
// code read aloud or copied by hand survives. 10 characters: 50 bits.
const (
	backupAlphabet = "0123456789abcdefghjkmnpqrstvwxyz"
	backupLen      = 10
)

// GenerateBackupCodes returns n random codes in canonical form (ten
// characters, no separator).
func GenerateBackupCodes(n int) ([]string, error) {
	codes := make([]string, n)
	buf := make([]byte, backupLen)
	for i := range codes {
		if _, err := rand.Read(buf); err != nil {
			return nil, err
		}
		b := make([]byte, backupLen)
		for j, v := range buf {
			b[j] = backupAlphabet[v&31] // 256 is a multiple of 32: no bias
		}
		codes[i] = string(b)
	}
	return codes, nil
}

// FormatBackupCode groups a canonical code for reading: xxxxx-xxxxx.
func FormatBackupCode(c string) string {
	if len(c) != backupLen {
		return c
	}
	return c[:5] + "-" + c[5:]
}

// NormalizeBackupCode turns what a user typed into the canonical form:
// separators and spaces dropped, any case, and the letters Crockford's
// alphabet leaves out read as the digits they look like.
func NormalizeBackupCode(in string) (string, bool) {
	if len(in) > 64 {
		return "", false
	}
	var b strings.Builder
	for _, r := range strings.ToLower(in) {
		switch { // full-width digits and letters from a Japanese IME
		case r >= '０' && r <= '９':
			r = '0' + (r - '０')
		case r >= 'ａ' && r <= 'ｚ':
			r = 'a' + (r - 'ａ')
		}
		switch {
		case isSeparator(r):
			continue
		case r == 'o':
			r = '0'
		case r == 'i' || r == 'l':
			r = '1'
		}
		if !strings.ContainsRune(backupAlphabet, r) {
			return "", false
		}
		b.WriteRune(r)
	}
	if b.Len() != backupLen {
		return "", false
	}
	return b.String(), true
}

// BackupCodeHash is the keyed hash the store looks a code up by.
func BackupCodeHash(k *crypt.Key, userID, canonical string) []byte {
	return k.MAC("backup-code", []byte(userID+"\x00"+canonical))
}

func backupAAD(userID string) []byte { return []byte("backup-code:" + userID) }

// SealBackupCodes prepares codes for the store: a keyed hash to verify and
// a ciphertext to show them again after the password is re-entered.
func SealBackupCodes(k *crypt.Key, userID string, codes []string) []store.BackupCode {
	out := make([]store.BackupCode, len(codes))
	for i, c := range codes {
		out[i] = store.BackupCode{
			Position: i,
			Hash:     BackupCodeHash(k, userID, c),
			Enc:      k.Seal([]byte(c), backupAAD(userID)),
		}
	}
	return out
}

// OpenBackupCodes decrypts the stored codes, in order.
func OpenBackupCodes(k *crypt.Key, userID string, recs []store.BackupCode) ([]string, error) {
	out := make([]string, len(recs))
	for i, r := range recs {
		b, err := k.Open(r.Enc, backupAAD(userID))
		if err != nil {
			return nil, fmt.Errorf("backup code %d: %w", r.Position, err)
		}
		out[i] = string(b)
	}
	return out, nil
}

// isSeparator reports what people type between the groups of a code: it
// is dropped before the code is checked. White space (full-width too),
// any dash (the full-width hyphen-minus of a Japanese IME, en and em
// dashes), the minus sign, and the prolonged sound marks an IME gives for
// "-" in kana mode (ー, and ｰ half-width).
func isSeparator(r rune) bool {
	return unicode.IsSpace(r) || unicode.Is(unicode.Pd, r) || r == '\u2212' || r == '\u30fc' || r == '\uff70'
}
