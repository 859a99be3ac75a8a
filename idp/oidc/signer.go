package oidc

import (
	"context"
	"crypto"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"strings"

	"github.com/ory/fosite/token/jwt"
)

// KeySource is what the provider needs of the signing keys (idp/keys).
type KeySource interface {
	// Sign returns a compact JWS of payload signed with the current key,
	// with "kid" and "typ" set.
	Sign(ctx context.Context, payload []byte, header map[string]any) (string, error)
	// PublicKey returns the published key with this id.
	PublicKey(ctx context.Context, kid string) (crypto.PublicKey, error)
	// JWKS returns the published keys as a JSON Web Key Set.
	JWKS(ctx context.Context) ([]byte, error)
}

// signer implements fosite's jwt.Signer with the provider's own keys, so the
// key and its "kid" are chosen at signing time (a rotation between the
// authorisation and the code exchange cannot produce a token whose kid
// names another key).
type signer struct{ keys KeySource }

var _ jwt.Signer = signer{}

func (s signer) Generate(ctx context.Context, claims jwt.MapClaims, header jwt.Mapper) (string, string, error) {
	payload, err := json.Marshal(claims)
	if err != nil {
		return "", "", fmt.Errorf("encode claims: %w", err)
	}
	var h map[string]any
	if header != nil {
		h = header.ToMap()
	}
	token, err := s.keys.Sign(ctx, payload, h)
	if err != nil {
		return "", "", err
	}
	sig, err := s.GetSignature(ctx, token)
	return token, sig, err
}

func (s signer) Decode(ctx context.Context, token string) (*jwt.Token, error) {
	return jwt.ParseWithClaims(token, jwt.MapClaims{}, func(t *jwt.Token) (any, error) {
		kid, _ := t.Header["kid"].(string)
		if kid == "" {
			return nil, errors.New("token has no kid")
		}
		return s.keys.PublicKey(ctx, kid)
	})
}

func (s signer) Validate(ctx context.Context, token string) (string, error) {
	if _, err := s.Decode(ctx, token); err != nil {
		return "", err
	}
	return s.GetSignature(ctx, token)
}

func (s signer) GetSignature(_ context.Context, token string) (string, error) {
	parts := strings.Split(token, ".")
	if len(parts) != 3 {
		return "", errors.New("malformed JWT")
	}
	return parts[2], nil
}

func (s signer) Hash(_ context.Context, in []byte) ([]byte, error) {
	sum := sha256.Sum256(in)
	return sum[:], nil
}

// GetSigningMethodLength is the hash size of RS256 and ES256 (SHA-256),
// used for at_hash.
func (s signer) GetSigningMethodLength(context.Context) int { return sha256.Size }
