package oidc

import (
	"encoding/binary"
	"encoding/json"
	"fmt"
	"net/url"
	"time"

	"github.com/ory/fosite"
	"github.com/ory/fosite/handler/openid"
	"github.com/ory/fosite/token/jwt"

	"github.com/kamera-id/idp/idp/bincodec"
)

// The request stored with a code or a token is a compact binary encoding
// (package bincodec) rather than JSON: a login encoded three (the code,
// the access and the refresh token) and decoded two, and encoding/json's
// reflection cost about a tenth of a millisecond of the login's CPU. A
// version byte (a record stored as JSON by an earlier release starts with
// '{' and is still read: storedRequest), the request's fields, then the
// session's (appendSession). A new field of Session, openid.DefaultSession
// or jwt.IDTokenClaims must be added to both sides (TestRequestCodecFields
// fails until it is).

const requestCodecVersion = 1

// encodeRequest encodes the request r with the form kept (storedFormKeys).
func encodeRequest(r fosite.Requester, form url.Values) ([]byte, error) {
	sess, ok := r.GetSession().(*Session)
	if !ok {
		return nil, fmt.Errorf("encode request: a session of type %T", r.GetSession())
	}
	b := make([]byte, 0, 512)
	b = append(b, requestCodecVersion)
	b = bincodec.AppendString(b, r.GetID())
	b = bincodec.AppendTime(b, r.GetRequestedAt())
	b = bincodec.AppendString(b, r.GetClient().GetID())
	b = bincodec.AppendStrings(b, r.GetRequestedScopes())
	b = bincodec.AppendStrings(b, r.GetGrantedScopes())
	b = bincodec.AppendStrings(b, r.GetRequestedAudience())
	b = bincodec.AppendStrings(b, r.GetGrantedAudience())
	b = appendMapLen(b, form == nil, len(form))
	for k, v := range form {
		b = bincodec.AppendStrings(bincodec.AppendString(b, k), v)
	}
	return appendSession(b, sess)
}

// parseRequest decodes a stored request: its fields into sr, and the
// session's encoding, returned to be decoded into the session a caller
// gives (decodeSession). A record stored as JSON comes back with its
// session in sr.Session and no encoding.
func parseRequest(data []byte, sr *storedRequest) (session []byte, err error) {
	if len(data) > 0 && data[0] == '{' {
		if err := json.Unmarshal(data, sr); err != nil {
			return nil, fmt.Errorf("decode request: %w", err)
		}
		return nil, nil
	}
	d := bincodec.NewDecoder(data)
	if d.Byte() != requestCodecVersion {
		return nil, fmt.Errorf("decode request: %w", bincodec.ErrMalformed)
	}
	sr.ID = d.String()
	sr.RequestedAt = d.Time()
	sr.ClientID = d.String()
	sr.Scopes = d.Strings()
	sr.GrantedScopes = d.Strings()
	sr.Audience = d.Strings()
	sr.GrantedAudience = d.Strings()
	if n, ok := mapLen(d); ok {
		sr.Form = make(url.Values, n)
		for range n {
			k := d.String()
			sr.Form[k] = d.Strings()
		}
	}
	session, err = d.Rest()
	if err != nil {
		return nil, fmt.Errorf("decode request: %w", err)
	}
	return session, nil
}

// appendMapLen encodes a map's length, nil apart from empty: whether it
// is a map, then its length.
func appendMapLen(b []byte, isNil bool, n int) []byte {
	if b = bincodec.AppendBool(b, !isNil); isNil {
		return b
	}
	return binary.AppendUvarint(b, uint64(n))
}

// mapLen decodes appendMapLen: the length, false for nil.
func mapLen(d *bincodec.Decoder) (int, bool) {
	if !d.Bool() {
		return 0, false
	}
	return d.Len(), true
}

// appendSession appends the session's fields.
func appendSession(b []byte, s *Session) ([]byte, error) {
	b = bincodec.AppendString(b, s.SID)
	b = bincodec.AppendStrings(b, s.UserinfoClaims)
	ds := s.DefaultSession
	if b = bincodec.AppendBool(b, ds != nil); ds == nil {
		return b, nil
	}
	b = bincodec.AppendString(b, ds.Username)
	b = bincodec.AppendString(b, ds.Subject)
	b = appendMapLen(b, ds.ExpiresAt == nil, len(ds.ExpiresAt))
	for k, t := range ds.ExpiresAt {
		b = bincodec.AppendTime(bincodec.AppendString(b, string(k)), t)
	}
	b = bincodec.AppendBool(b, ds.Headers != nil)
	var err error
	if ds.Headers != nil {
		if b, err = appendExtra(b, ds.Headers.Extra); err != nil {
			return nil, err
		}
	}
	c := ds.Claims
	if b = bincodec.AppendBool(b, c != nil); c == nil {
		return b, nil
	}
	b = bincodec.AppendString(b, c.JTI)
	b = bincodec.AppendString(b, c.Issuer)
	b = bincodec.AppendString(b, c.Subject)
	b = bincodec.AppendStrings(b, c.Audience)
	b = bincodec.AppendString(b, c.Nonce)
	b = bincodec.AppendTime(b, c.ExpiresAt)
	b = bincodec.AppendTime(b, c.IssuedAt)
	b = bincodec.AppendTime(b, c.RequestedAt)
	b = bincodec.AppendTime(b, c.AuthTime)
	b = bincodec.AppendString(b, c.AccessTokenHash)
	b = bincodec.AppendString(b, c.AuthenticationContextClassReference)
	b = bincodec.AppendStrings(b, c.AuthenticationMethodsReferences)
	b = bincodec.AppendString(b, c.CodeHash)
	return appendExtra(b, c.Extra)
}

// Kinds of a claim's value in appendExtra: the two the provider puts
// there, and anything else as JSON (read back as JSON would read it).
const (
	extraString = 's'
	extraBool   = 'b'
	extraJSON   = 'j'
)

// appendExtra appends a map of extra claims.
func appendExtra(b []byte, m map[string]any) ([]byte, error) {
	b = appendMapLen(b, m == nil, len(m))
	for k, v := range m {
		b = bincodec.AppendString(b, k)
		switch v := v.(type) {
		case string:
			b = bincodec.AppendString(append(b, extraString), v)
		case bool:
			b = bincodec.AppendBool(append(b, extraBool), v)
		default:
			j, err := json.Marshal(v)
			if err != nil {
				return nil, fmt.Errorf("encode claim %q: %w", k, err)
			}
			b = bincodec.AppendString(append(b, extraJSON), string(j))
		}
	}
	return b, nil
}

func parseExtra(d *bincodec.Decoder) map[string]any {
	n, ok := mapLen(d)
	if !ok {
		return nil
	}
	m := make(map[string]any, n)
	for range n {
		k := d.String()
		switch d.Byte() {
		case extraString:
			m[k] = d.String()
		case extraBool:
			m[k] = d.Bool()
		case extraJSON:
			var v any
			if json.Unmarshal(d.Bytes(), &v) != nil {
				d.Fail()
			}
			m[k] = v
		default:
			d.Fail()
		}
	}
	return m
}

// decodeSession fills s from a session's encoding (parseRequest).
func decodeSession(p []byte, s *Session) error {
	d := bincodec.NewDecoder(p)
	s.SID = d.String()
	s.UserinfoClaims = d.Strings()
	s.DefaultSession = nil
	if d.Bool() {
		ds := &openid.DefaultSession{}
		ds.Username = d.String()
		ds.Subject = d.String()
		if n, ok := mapLen(d); ok {
			ds.ExpiresAt = make(map[fosite.TokenType]time.Time, n)
			for range n {
				k := d.String()
				ds.ExpiresAt[fosite.TokenType(k)] = d.Time()
			}
		}
		if d.Bool() {
			ds.Headers = &jwt.Headers{Extra: parseExtra(d)}
		}
		if d.Bool() {
			c := &jwt.IDTokenClaims{}
			c.JTI = d.String()
			c.Issuer = d.String()
			c.Subject = d.String()
			c.Audience = d.Strings()
			c.Nonce = d.String()
			c.ExpiresAt = d.Time()
			c.IssuedAt = d.Time()
			c.RequestedAt = d.Time()
			c.AuthTime = d.Time()
			c.AccessTokenHash = d.String()
			c.AuthenticationContextClassReference = d.String()
			c.AuthenticationMethodsReferences = d.Strings()
			c.CodeHash = d.String()
			c.Extra = parseExtra(d)
			ds.Claims = c
		}
		s.DefaultSession = ds
	}
	if err := d.Err(); err != nil {
		return fmt.Errorf("decode session: %w", err)
	}
	return nil
}
