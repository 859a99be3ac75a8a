package web

import (
	"encoding/binary"
	"errors"
	"time"

	"github.com/kamera-id/idp/idp/bincodec"
)

// The plaintext of a sealed login (sealLogin) is a compact binary encoding
// of the flow rather than JSON (package bincodec): a login's every step
// opens it; without the field names and the base64 inside JSON, the
// login's URLs and forms are shorter too. A version byte, then the login's
// own id and expiry, then every field of the flow in declaration order. A
// new field of flow must be added to both functions below
// (TestLoginCodecFields fails until it is).

const loginCodecVersion = 1

var errLoginCodec = errors.New("malformed sealed login")

// appendLogin appends the encoding of the login f to b.
func appendLogin(b []byte, f *flow) []byte {
	b = append(b, loginCodecVersion)
	b = bincodec.AppendString(b, f.loginID)
	b = binary.AppendVarint(b, f.expires.Unix())
	b = bincodec.AppendString(b, f.Kind)
	b = bincodec.AppendString(b, string(f.Browser))
	b = bincodec.AppendString(b, f.Lang)
	b = bincodec.AppendString(b, f.Authorize)
	b = bincodec.AppendTime(b, f.RequestedAt)
	b = bincodec.AppendString(b, f.ClientName)
	b = bincodec.AppendString(b, f.ClientID)
	b = bincodec.AppendString(b, f.ReturnTo)
	b = bincodec.AppendString(b, f.Email)
	b = bincodec.AppendString(b, f.UserID)
	b = bincodec.AppendStrings(b, f.AMR)
	b = bincodec.AppendBool(b, f.Remember)
	b = bincodec.AppendString(b, f.Account)
	b = bincodec.AppendString(b, string(f.Stamp))
	b = binary.AppendVarint(b, int64(f.Remaining))
	b = bincodec.AppendString(b, f.Stage)
	b = bincodec.AppendTime(b, f.ReauthAt)
	b = bincodec.AppendString(b, f.Notice)
	b = bincodec.AppendString(b, f.Typed)
	b = bincodec.AppendString(b, string(f.Shown))
	b = bincodec.AppendString(b, f.Session)
	b = bincodec.AppendString(b, f.PostLogoutURI)
	return bincodec.AppendString(b, f.State)
}

// parseLogin decodes what appendLogin encoded; errLoginCodec when p is
// not such an encoding, whole.
func parseLogin(p []byte) (*flow, error) {
	d := bincodec.NewDecoder(p)
	if d.Byte() != loginCodecVersion {
		return nil, errLoginCodec
	}
	f := &flow{}
	f.loginID = d.String()
	f.expires = time.Unix(d.Varint(), 0)
	f.Kind = d.String()
	f.Browser = d.Bytes()
	f.Lang = d.String()
	f.Authorize = d.String()
	f.RequestedAt = d.Time()
	f.ClientName = d.String()
	f.ClientID = d.String()
	f.ReturnTo = d.String()
	f.Email = d.String()
	f.UserID = d.String()
	f.AMR = d.Strings()
	f.Remember = d.Bool()
	f.Account = d.String()
	f.Stamp = d.Bytes()
	f.Remaining = int(d.Varint())
	f.Stage = d.String()
	f.ReauthAt = d.Time()
	f.Notice = d.String()
	f.Typed = d.String()
	f.Shown = d.Bytes()
	f.Session = d.String()
	f.PostLogoutURI = d.String()
	f.State = d.String()
	if d.Err() != nil {
		return nil, errLoginCodec
	}
	return f, nil
}
