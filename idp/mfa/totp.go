// Package mfa implements the second factor: TOTP (RFC 6238: SHA-1, six
// digits, 30-second steps, 160-bit secrets, as Google Authenticator expects)
// and single-use backup codes.
package mfa

import (
	"crypto/rand"
	"crypto/subtle"
	"encoding/base32"
	"errors"
	"net/url"
	"strings"
	"time"

	"github.com/pquerna/otp"
	"github.com/pquerna/otp/hotp"
	"github.com/skip2/go-qrcode"

	"github.com/kamera-id/idp/idp/crypt"
)

const (
	// Period is the TOTP time step.
	Period = 30
	// Digits is the length of a TOTP code.
	Digits = 6
	// secretBytes is the secret's length: 160 bits, as RFC 4226 recommends.
	secretBytes = 20
	// Skew is how many neighbouring steps are accepted for clock drift.
	Skew = 1
)

var (
	// ErrInvalidCode: the code matches no acceptable time step.
	ErrInvalidCode = errors.New("mfa: invalid code")
	// ErrReplay: the code is right but its time step was already used.
	ErrReplay = errors.New("mfa: code already used")
)

var b32 = base32.StdEncoding.WithPadding(base32.NoPadding)

var hotpOpts = hotp.ValidateOpts{Digits: otp.DigitsSix, Algorithm: otp.AlgorithmSHA1}

// NewSecret returns a random 160-bit secret, base32 without padding.
func NewSecret() (string, error) {
	b := make([]byte, secretBytes)
	if _, err := rand.Read(b); err != nil {
		return "", err
	}
	return b32.EncodeToString(b), nil
}

// KeyURI is the otpauth:// URI an authenticator app reads from the QR code
// (Google Authenticator's Key Uri Format): the label issuer:account, and
// the parameters, each percent-encoded (keyURIEscape). The issuer has no
// colon (config).
func KeyURI(issuer, account, secret string) string {
	return "otpauth://totp/" + keyURIEscape(issuer) + ":" + keyURIEscape(account) +
		"?secret=" + secret + "&issuer=" + keyURIEscape(issuer) + "&algorithm=SHA1&digits=6&period=30"
}

// keyURIEscape percent-encodes s as RFC 3986 has it, as the Key Uri Format
// asks: a space is %20, never + (which apps read as a plus: "Camera+ID"),
// and a colon, slash or plus in an address is escaped, so that the label
// splits at its one colon. @ is kept, as authenticator apps show it.
func keyURIEscape(s string) string {
	return strings.NewReplacer("+", "%20", "%40", "@").Replace(url.QueryEscape(s))
}

// QRCodePNG renders uri as a PNG QR code of size×size pixels.
func QRCodePNG(uri string, size int) ([]byte, error) {
	return qrcode.Encode(uri, qrcode.Medium, size)
}

// GroupKey formats a secret for reading and typing: groups of four.
func GroupKey(secret string) string {
	var b strings.Builder
	for i, r := range secret {
		if i > 0 && i%4 == 0 {
			b.WriteByte(' ')
		}
		b.WriteRune(r)
	}
	return b.String()
}

// StepAt is the RFC 6238 time step of t.
func StepAt(t time.Time) int64 { return t.Unix() / Period }

// CodeAt returns the code for a time step (tests and the load tool use it).
func CodeAt(secret string, step int64) (string, error) {
	return hotp.GenerateCodeCustom(secret, uint64(step), hotpOpts)
}

// Verify checks code against the steps around now and returns the step it
// matched. Steps at or before lastStep were already used: a code for one of
// them is ErrReplay. The caller must then record the step atomically
// (store.StartSession, with the login's session), which also settles two
// concurrent requests.
func Verify(secret, code string, now time.Time, lastStep int64) (int64, error) {
	code = strings.Map(func(r rune) rune {
		switch {
		case isSeparator(r):
			return -1
		case r >= '０' && r <= '９': // full-width digits from a Japanese IME
			return '0' + (r - '０')
		}
		return r
	}, code)
	if len(code) != Digits {
		return 0, ErrInvalidCode
	}
	current := StepAt(now)
	replay := false
	for _, step := range []int64{current, current - 1, current + 1} {
		want, err := CodeAt(secret, step)
		if err != nil {
			return 0, err
		}
		if subtle.ConstantTimeCompare([]byte(want), []byte(code)) != 1 {
			continue
		}
		if step <= lastStep {
			replay = true
			continue
		}
		return step, nil
	}
	if replay {
		return 0, ErrReplay
	}
	return 0, ErrInvalidCode
}

// SealSecret encrypts a TOTP secret for the store, bound to its user.
func SealSecret(k *crypt.Key, userID, secret string) []byte {
	return k.Seal([]byte(secret), []byte("totp:"+userID))
}

// OpenSecret decrypts what SealSecret made for the same user.
func OpenSecret(k *crypt.Key, userID string, enc []byte) (string, error) {
	b, err := k.Open(enc, []byte("totp:"+userID))
	return string(b), err
}
