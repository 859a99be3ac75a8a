package oidc

import (
	"encoding/json"
	"net/url"
	"reflect"
	"testing"
	"time"

	"github.com/ory/fosite"
	"github.com/ory/fosite/handler/openid"
	"github.com/ory/fosite/token/jwt"

	"github.com/kamera-id/idp/idp/store"
)

// fill sets every exported field of the struct v points to, and of the
// structs it points to, to a value that is not its zero, by reflection: a
// field added to Session, openid.DefaultSession or jwt.IDTokenClaims (a
// fosite upgrade) is filled here without a word, and the codec must carry
// it.
func fill(t *testing.T, v reflect.Value) {
	t.Helper()
	for i := range v.NumField() {
		sf := v.Type().Field(i)
		if !sf.IsExported() {
			continue
		}
		// Each field's own value, so that two fields swapped are seen.
		name := v.Type().Name() + "." + sf.Name
		at := time.Date(2026, 12, 5, 22, 30, i, 123456789, time.UTC)
		switch x := v.Field(i).Addr().Interface().(type) {
		case *string:
			*x = name + " 値\x00"
		case *[]string:
			*x = []string{name, "", "otp"}
		case *time.Time:
			*x = at
		case *map[string]any:
			// Every kind of value a claim may have after a JSON round trip.
			*x = map[string]any{"email": "a@example.com", "email_verified": true, "no": false, "n": 1.5,
				"list": []any{"a", 2.0}, "obj": map[string]any{"k": "v"}, "null": nil, "": ""}
		case *map[fosite.TokenType]time.Time:
			*x = map[fosite.TokenType]time.Time{fosite.AuthorizeCode: at, fosite.AccessToken: at.Add(time.Hour)}
		case **openid.DefaultSession:
			*x = &openid.DefaultSession{}
			fill(t, reflect.ValueOf(*x).Elem())
		case **jwt.IDTokenClaims:
			*x = &jwt.IDTokenClaims{}
			fill(t, reflect.ValueOf(*x).Elem())
		case **jwt.Headers:
			*x = &jwt.Headers{}
			fill(t, reflect.ValueOf(*x).Elem())
		default:
			t.Fatalf("%s.%s: a %s, which the test cannot fill: add it here and to the request's encoding",
				v.Type(), sf.Name, sf.Type)
		}
	}
}

func filledSession(t *testing.T) *Session {
	s := &Session{}
	fill(t, reflect.ValueOf(s).Elem())
	return s
}

// codecRequest is a request with every field the store keeps.
func codecRequest(sess fosite.Session) *fosite.Request {
	return &fosite.Request{
		ID: "req-1", RequestedAt: time.Date(2026, 12, 5, 22, 30, 0, 0, time.UTC), Client: client{Client: &store.Client{ID: "c1"}},
		RequestedScope: fosite.Arguments{"openid", "email", "offline_access"}, GrantedScope: fosite.Arguments{"openid", "email"},
		RequestedAudience: fosite.Arguments{"aud-1"}, GrantedAudience: fosite.Arguments{"aud-1"},
		Form:    url.Values{"redirect_uri": {"http://127.0.0.1/cb"}, "code_challenge": {"challenge"}, "prompt": {"login", ""}},
		Session: sess,
	}
}

// decoded reads a stored request back as Storage.get does.
func decoded(t *testing.T, data []byte) (storedRequest, *Session) {
	t.Helper()
	sr, sess, err := decodeRecord(data)
	if err != nil {
		t.Fatal(err)
	}
	return sr, sess
}

func decodeRecord(data []byte) (storedRequest, *Session, error) {
	dc := &decodedRecord{}
	var err error
	if dc.session, err = parseRequest(data, &dc.req); err != nil {
		return dc.req, nil, err
	}
	sess := NewSession()
	return dc.req, sess, dc.fill(sess)
}

// TestRequestCodecFields: a request and its session come out of their
// encoding as they went in, every field, filled, empty or nil.
func TestRequestCodecFields(t *testing.T) {
	empty := &Session{DefaultSession: &openid.DefaultSession{Claims: &jwt.IDTokenClaims{Extra: map[string]any{}},
		Headers: &jwt.Headers{}, ExpiresAt: map[fosite.TokenType]time.Time{}}}
	for name, sess := range map[string]*Session{
		"filled": filledSession(t), "new": NewSession(), "empty maps": empty, "no default session": {SID: "sid"},
	} {
		r := codecRequest(sess)
		data, err := encodeRequest(r, r.Form)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		sr, got := decoded(t, data)
		want := storedRequest{ID: r.ID, RequestedAt: r.RequestedAt, ClientID: "c1",
			Scopes: r.RequestedScope, GrantedScopes: r.GrantedScope, Audience: r.RequestedAudience,
			GrantedAudience: r.GrantedAudience, Form: r.Form}
		if !reflect.DeepEqual(sr, want) {
			t.Errorf("%s: request decoded\n%+v\nwant\n%+v", name, sr, want)
		}
		if !reflect.DeepEqual(got, sess) {
			t.Errorf("%s: session decoded\n%#v\nwant\n%#v", name, got, sess)
		}
	}
}

// TestRequestCodecJSON: a record an earlier release stored as JSON is
// still read, to the same request and session.
func TestRequestCodecJSON(t *testing.T) {
	sess := filledSession(t)
	r := codecRequest(sess)
	js, err := json.Marshal(sess)
	if err != nil {
		t.Fatal(err)
	}
	old, err := json.Marshal(storedRequest{ID: r.ID, RequestedAt: r.RequestedAt, ClientID: "c1",
		Scopes: r.RequestedScope, GrantedScopes: r.GrantedScope, Audience: r.RequestedAudience,
		GrantedAudience: r.GrantedAudience, Form: r.Form, Session: js})
	if err != nil {
		t.Fatal(err)
	}
	data, err := encodeRequest(r, r.Form)
	if err != nil {
		t.Fatal(err)
	}
	oldReq, oldSess := decoded(t, old)
	newReq, newSess := decoded(t, data)
	oldReq.Session = nil
	if !reflect.DeepEqual(oldReq, newReq) {
		t.Errorf("the request stored as JSON reads\n%+v\nthe encoded one\n%+v", oldReq, newReq)
	}
	if !reflect.DeepEqual(oldSess, newSess) {
		t.Errorf("the session stored as JSON reads\n%#v\nthe encoded one\n%#v", oldSess, newSess)
	}
	if len(data) >= len(old) {
		t.Errorf("the encoding takes %d bytes, JSON %d", len(data), len(old))
	}
}

// TestRequestCodecMalformed: a truncated record, one with bytes after it
// or of another version is refused, never half-read.
func TestRequestCodecMalformed(t *testing.T) {
	r := codecRequest(filledSession(t))
	whole, err := encodeRequest(r, r.Form)
	if err != nil {
		t.Fatal(err)
	}
	read := func(data []byte) error {
		_, _, err := decodeRecord(data)
		return err
	}
	for n := range len(whole) {
		if read(whole[:n]) == nil {
			t.Fatalf("the record cut to %d of %d bytes was read", n, len(whole))
		}
	}
	if read(append(whole[:len(whole):len(whole)], 0)) == nil {
		t.Error("the record with a byte after it was read")
	}
	if read(append([]byte{requestCodecVersion + 1}, whole[1:]...)) == nil {
		t.Error("another version's record was read")
	}
	if err := read(whole); err != nil {
		t.Errorf("the whole record: %v", err)
	}
}
