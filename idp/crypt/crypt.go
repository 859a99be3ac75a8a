// Package crypt holds the master key and the few primitives built on it:
// authenticated encryption of secrets at rest (AES-256-GCM) and of values a
// browser carries (XChaCha20-Poly1305), keyed hashes (HMAC-SHA256) with a
// purpose label, and random tokens.
//
// Every use of the key names its purpose, so a value computed for one
// purpose (a CSRF token, a backup-code hash, ...) is never valid for another.
package crypt

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/hkdf"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"golang.org/x/crypto/chacha20poly1305"
)

// KeySize is the master key's length in bytes.
const KeySize = 32

// sealVersion prefixes every ciphertext so the format can evolve.
const sealVersion = 1

// ErrDecrypt is returned for a ciphertext that is malformed, was made with
// another key, or is bound to other associated data.
var ErrDecrypt = errors.New("crypt: cannot decrypt")

// Key is the master key. It never leaves the process: only values derived
// from it (ciphertexts, MACs, subkeys) do.
type Key struct {
	aead    cipher.AEAD
	browser cipher.AEAD // SealForBrowser
	macKey  []byte
	raw     []byte
}

// NewKey builds a Key from 32 raw bytes.
func NewKey(raw []byte) (*Key, error) {
	if len(raw) != KeySize {
		return nil, fmt.Errorf("master key must be %d bytes, got %d", KeySize, len(raw))
	}
	encKey, err := hkdf.Key(sha256.New, raw, nil, "idp aes-gcm v1", 32)
	if err != nil {
		return nil, err
	}
	block, err := aes.NewCipher(encKey)
	if err != nil {
		return nil, err
	}
	aead, err := cipher.NewGCM(block)
	if err != nil {
		return nil, err
	}
	browserKey, err := hkdf.Key(sha256.New, raw, nil, "idp browser xchacha20-poly1305 v1", chacha20poly1305.KeySize)
	if err != nil {
		return nil, err
	}
	browser, err := chacha20poly1305.NewX(browserKey)
	if err != nil {
		return nil, err
	}
	macKey, err := hkdf.Key(sha256.New, raw, nil, "idp hmac v1", 32)
	if err != nil {
		return nil, err
	}
	return &Key{aead: aead, browser: browser, macKey: macKey, raw: append([]byte(nil), raw...)}, nil
}

// ParseKey reads a base64-encoded 32-byte key; surrounding white space is
// ignored. The error never contains the key.
func ParseKey(text string) (*Key, error) {
	s := strings.TrimSpace(text)
	raw, err := base64.StdEncoding.DecodeString(s)
	if err != nil {
		raw, err = base64.RawStdEncoding.DecodeString(s)
	}
	if err != nil {
		return nil, errors.New("master key is not valid base64 (create one with: openssl rand -base64 32)")
	}
	if len(raw) != KeySize {
		return nil, fmt.Errorf("master key must decode to %d bytes, got %d (create one with: openssl rand -base64 32)", KeySize, len(raw))
	}
	return NewKey(raw)
}

// LoadKeyFile reads the key from a file.
func LoadKeyFile(path string) (*Key, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("master key file: %w", err)
	}
	k, err := ParseKey(string(b))
	if err != nil {
		return nil, fmt.Errorf("master key file %s: %w", path, err)
	}
	return k, nil
}

// CreateKeyFile writes a new random key to path (mode 0600), failing with
// fs.ErrExist if the file exists. The key is written to a file of its own
// first, then linked at path, so path never holds a partly written key: a
// second process starting at the same moment reads the whole key or none.
func CreateKeyFile(path string) (*Key, error) {
	dir := filepath.Dir(path)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("master key file: %w", err)
	}
	raw := make([]byte, KeySize)
	rand.Read(raw)
	f, err := os.CreateTemp(dir, ".secret-key-*") // mode 0600
	if err != nil {
		return nil, fmt.Errorf("master key file: %w", err)
	}
	defer os.Remove(f.Name())
	_, werr := f.WriteString(base64.StdEncoding.EncodeToString(raw) + "\n")
	if werr == nil {
		werr = f.Sync()
	}
	if cerr := f.Close(); werr == nil {
		werr = cerr
	}
	if werr == nil {
		werr = os.Link(f.Name(), path) // fs.ErrExist when another process won
	}
	if werr != nil {
		return nil, fmt.Errorf("master key file: %w", werr)
	}
	return NewKey(raw)
}

// LoadOrCreateKeyFile loads the key file, creating it first when it does
// not exist (the embedded default's first start).
func LoadOrCreateKeyFile(path string) (*Key, error) {
	k, err := LoadKeyFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		k, err = CreateKeyFile(path)
		if errors.Is(err, fs.ErrExist) { // another process won the race
			return LoadKeyFile(path)
		}
	}
	return k, err
}

// Seal encrypts plaintext with AES-256-GCM, binding aad (which is not
// stored) to the ciphertext: it opens only with the same aad.
func (k *Key) Seal(plaintext, aad []byte) []byte { return seal(k.aead, sealVersion, plaintext, aad) }

// Open decrypts what Seal made with the same aad.
func (k *Key) Open(ciphertext, aad []byte) ([]byte, error) {
	return open(k.aead, sealVersion, ciphertext, aad)
}

// browserSealVersion marks what SealForBrowser made.
const browserSealVersion = 2

// SealForBrowser encrypts plaintext for a browser to carry (a cookie, a
// sealed login in a URL), binding aad as Seal does. These are made at
// every login, so they are sealed apart from the secrets kept at rest,
// with XChaCha20-Poly1305 under a key of their own: its 192-bit random
// nonces allow any number of values, where AES-GCM's 96-bit ones are good
// for 2^32 values a key.
func (k *Key) SealForBrowser(plaintext, aad []byte) []byte {
	return seal(k.browser, browserSealVersion, plaintext, aad)
}

// OpenFromBrowser decrypts what SealForBrowser made with the same aad.
func (k *Key) OpenFromBrowser(ciphertext, aad []byte) ([]byte, error) {
	return open(k.browser, browserSealVersion, ciphertext, aad)
}

// seal is version, a random nonce and plaintext sealed by a under it.
func seal(a cipher.AEAD, version byte, plaintext, aad []byte) []byte {
	n := a.NonceSize()
	out := make([]byte, 1+n, 1+n+len(plaintext)+a.Overhead())
	out[0] = version
	rand.Read(out[1:])
	return a.Seal(out, out[1:], plaintext, aad)
}

// open is what seal made with a, version and aad; ErrDecrypt otherwise.
func open(a cipher.AEAD, version byte, ciphertext, aad []byte) ([]byte, error) {
	n := a.NonceSize()
	if len(ciphertext) < 1+n+a.Overhead() || ciphertext[0] != version {
		return nil, ErrDecrypt
	}
	pt, err := a.Open(nil, ciphertext[1:1+n], ciphertext[1+n:], aad)
	if err != nil {
		return nil, ErrDecrypt
	}
	return pt, nil
}

// MAC is HMAC-SHA256 of data under a subkey for purpose.
func (k *Key) MAC(purpose string, data []byte) []byte {
	m := hmac.New(sha256.New, k.macKey)
	m.Write([]byte(purpose))
	m.Write([]byte{0})
	m.Write(data)
	return m.Sum(nil)
}

// Derive returns n bytes of key material for purpose (HKDF-SHA256), for
// secrets every instance must share (fosite's HMAC secret, ...).
func (k *Key) Derive(purpose string, n int) []byte {
	b, err := hkdf.Key(sha256.New, k.raw, nil, "idp derive: "+purpose, n)
	if err != nil {
		panic("crypt: derive: " + err.Error()) // only for absurd n
	}
	return b
}

// RandomToken returns n random bytes, base64url-encoded without padding.
func RandomToken(n int) string {
	b := make([]byte, n)
	rand.Read(b)
	return base64.RawURLEncoding.EncodeToString(b)
}

// HashToken is the SHA-256 of a high-entropy token: what the store keeps
// instead of session ids, flow ids and the like.
func HashToken(token string) []byte {
	sum := sha256.Sum256([]byte(token))
	return sum[:]
}

// Equal compares in constant time.
func Equal(a, b []byte) bool { return subtle.ConstantTimeCompare(a, b) == 1 }
