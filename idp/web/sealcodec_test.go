package web

import (
	"reflect"
	"testing"
	"time"
)

// filledFlow is a login flow whose every exported field, its id and its
// expiry are set (none to its zero value), by reflection: a field added to
// flow is filled here without a word, and appendLogin/parseLogin must
// carry it.
func filledFlow(t *testing.T) *flow {
	t.Helper()
	f := &flow{loginID: "login-id", expires: time.Unix(1767225600, 0)}
	v := reflect.ValueOf(f).Elem()
	for i := range v.NumField() {
		sf := v.Type().Field(i)
		if !sf.IsExported() {
			continue
		}
		fv := v.Field(i)
		switch x := fv.Addr().Interface().(type) {
		case *string:
			*x = sf.Name + " 値\x00"
		case *[]byte:
			*x = []byte(sf.Name + "\xff\x00")
		case *[]string:
			*x = []string{sf.Name, "", "otp"}
		case *bool:
			*x = true
		case *int:
			*x = -3
		case *time.Time:
			*x = time.Date(2026, 12, 5, 22, 30, 1, 123456789, time.UTC)
		default:
			t.Fatalf("flow.%s: a %s, which the test cannot fill: add it here and to the login's encoding", sf.Name, sf.Type)
		}
	}
	return f
}

// TestLoginCodecFields: a login comes out of its encoding as it went in,
// every field, filled or zero.
func TestLoginCodecFields(t *testing.T) {
	for name, f := range map[string]*flow{
		"filled": filledFlow(t),
		"zero":   {loginID: "login-id", expires: time.Unix(1767225600, 0)},
	} {
		got, err := parseLogin(appendLogin(nil, f))
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if !reflect.DeepEqual(got, f) {
			t.Errorf("%s: decoded\n%+v\nwant\n%+v", name, got, f)
		}
	}
}

// TestLoginCodecMalformed: a truncated encoding, one with bytes after
// it, another version's or an impossible value is refused, never
// half-read.
func TestLoginCodecMalformed(t *testing.T) {
	whole := appendLogin(nil, filledFlow(t))
	for n := range len(whole) {
		if _, err := parseLogin(whole[:n]); err == nil {
			t.Fatalf("the encoding cut to %d of %d bytes was read", n, len(whole))
		}
	}
	if _, err := parseLogin(append(whole[:len(whole):len(whole)], 0)); err == nil {
		t.Error("the encoding with a byte after it was read")
	}
	other := append([]byte{loginCodecVersion + 1}, whole[1:]...)
	if _, err := parseLogin(other); err == nil {
		t.Error("another version's encoding was read")
	}
	// Remember's byte is where a login that remembers differs.
	b, no := appendLogin(nil, &flow{Remember: true}), appendLogin(nil, &flow{})
	for i := range b {
		if b[i] != no[i] {
			b[i] = 2
			break
		}
	}
	if _, err := parseLogin(b); err == nil {
		t.Error("a boolean of 2 was read")
	}
}

func FuzzParseLogin(f *testing.F) {
	f.Add(appendLogin(nil, &flow{Kind: "login", loginID: "x"}))
	f.Fuzz(func(t *testing.T, p []byte) {
		fl, err := parseLogin(p)
		if err != nil {
			return
		}
		// What is read is what would be written.
		again, err := parseLogin(appendLogin(nil, fl))
		if err != nil || !reflect.DeepEqual(again, fl) {
			t.Fatalf("re-encoded: %+v (%v), want %+v", again, err, fl)
		}
	})
}
