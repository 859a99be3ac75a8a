package web

import (
	"encoding/binary"
	"errors"
	"time"
)

// The plaintext of a sealed login (sealLogin) is a compact binary encoding
// of the flow rather than JSON: a login's every step opens it, and
// encoding/json's reflection cost about as much as a store read each time;
// without the field names and the base64 inside JSON, the login's URLs and
// forms are shorter too. The encoding is private to the provider (sealed:
// nobody else reads or writes it): a version byte, then the login's own id
// and expiry, then every field of the flow in declaration order, strings
// and byte strings as their length (uvarint) and bytes, integers as
// varints, times as Unix seconds and nanoseconds, booleans as one byte. A
// new field of flow must be added to both functions below
// (TestLoginCodecFields fails until it is).

const loginCodecVersion = 1

var errLoginCodec = errors.New("malformed sealed login")

// appendLogin appends the encoding of the login f to b.
func appendLogin(b []byte, f *flow) []byte {
	b = append(b, loginCodecVersion)
	b = appendString(b, f.loginID)
	b = binary.AppendVarint(b, f.expires.Unix())
	b = appendString(b, f.Kind)
	b = appendString(b, string(f.Browser))
	b = appendString(b, f.Lang)
	b = appendString(b, f.Authorize)
	b = appendTime(b, f.RequestedAt)
	b = appendString(b, f.ClientName)
	b = appendString(b, f.ClientID)
	b = appendString(b, f.ReturnTo)
	b = appendString(b, f.Email)
	b = appendString(b, f.UserID)
	b = binary.AppendUvarint(b, uint64(len(f.AMR)))
	for _, m := range f.AMR {
		b = appendString(b, m)
	}
	b = appendBool(b, f.Remember)
	b = appendString(b, f.Account)
	b = appendString(b, string(f.Stamp))
	b = binary.AppendVarint(b, int64(f.Remaining))
	b = appendString(b, f.Stage)
	b = appendTime(b, f.ReauthAt)
	b = appendString(b, f.Notice)
	b = appendString(b, f.Typed)
	b = appendString(b, string(f.Shown))
	b = appendString(b, f.Session)
	b = appendString(b, f.PostLogoutURI)
	return appendString(b, f.State)
}

// parseLogin decodes what appendLogin encoded; errLoginCodec when p is
// not such an encoding, whole.
func parseLogin(p []byte) (*flow, error) {
	d := loginDecoder{p: p}
	if d.byte() != loginCodecVersion {
		return nil, errLoginCodec
	}
	f := &flow{}
	f.loginID = d.string()
	f.expires = time.Unix(d.varint(), 0)
	f.Kind = d.string()
	f.Browser = d.bytes()
	f.Lang = d.string()
	f.Authorize = d.string()
	f.RequestedAt = d.time()
	f.ClientName = d.string()
	f.ClientID = d.string()
	f.ReturnTo = d.string()
	f.Email = d.string()
	f.UserID = d.string()
	if n := d.uvarint(); n > 0 && n <= uint64(len(d.p)) {
		f.AMR = make([]string, n)
		for i := range f.AMR {
			f.AMR[i] = d.string()
		}
	} else if n > 0 {
		d.bad = true
	}
	f.Remember = d.bool()
	f.Account = d.string()
	f.Stamp = d.bytes()
	f.Remaining = int(d.varint())
	f.Stage = d.string()
	f.ReauthAt = d.time()
	f.Notice = d.string()
	f.Typed = d.string()
	f.Shown = d.bytes()
	f.Session = d.string()
	f.PostLogoutURI = d.string()
	f.State = d.string()
	if d.bad || len(d.p) != 0 {
		return nil, errLoginCodec
	}
	return f, nil
}

func appendString(b []byte, s string) []byte {
	return append(binary.AppendUvarint(b, uint64(len(s))), s...)
}

func appendTime(b []byte, t time.Time) []byte {
	return binary.AppendUvarint(binary.AppendVarint(b, t.Unix()), uint64(t.Nanosecond()))
}

func appendBool(b []byte, v bool) []byte {
	if v {
		return append(b, 1)
	}
	return append(b, 0)
}

// loginDecoder reads appendLogin's encoding from p; bad records the first
// error (every read after it returns a zero value).
type loginDecoder struct {
	p   []byte
	bad bool
}

func (d *loginDecoder) byte() byte {
	if len(d.p) == 0 {
		return take(d, byte(0), 0)
	}
	return take(d, d.p[0], 1)
}

func (d *loginDecoder) uvarint() uint64 {
	v, n := binary.Uvarint(d.p)
	return take(d, v, n)
}

func (d *loginDecoder) varint() int64 {
	v, n := binary.Varint(d.p)
	return take(d, v, n)
}

// take consumes the n bytes that were read as v; the zero value, and d
// gone bad, when they could not be read (n <= 0: too few bytes, or a
// number too large) or d is bad already.
func take[T any](d *loginDecoder, v T, n int) T {
	if d.bad || n <= 0 {
		d.bad = true
		var zero T
		return zero
	}
	d.p = d.p[n:]
	return v
}

// bytes is a length-prefixed byte string (nil when empty, as JSON's
// omitempty left it).
func (d *loginDecoder) bytes() []byte {
	n := d.uvarint()
	if d.bad || n > uint64(len(d.p)) {
		d.bad = true
		return nil
	}
	if n == 0 {
		return nil
	}
	v := d.p[:n:n]
	d.p = d.p[n:]
	return v
}

func (d *loginDecoder) string() string { return string(d.bytes()) }

func (d *loginDecoder) time() time.Time {
	sec, nsec := d.varint(), d.uvarint()
	if nsec >= uint64(time.Second) {
		d.bad = true
		return time.Time{}
	}
	return time.Unix(sec, int64(nsec)).UTC()
}

func (d *loginDecoder) bool() bool {
	switch d.byte() {
	case 0:
		return false
	case 1:
		return true
	}
	d.bad = true
	return false
}
