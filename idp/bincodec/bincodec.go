// Package bincodec is the compact binary encoding of the provider's own
// records that only it reads and writes: the sealed login the browser
// carries (web) and the requests stored with codes and tokens (oidc).
// encoding/json's reflection cost about as much as a store read wherever
// a login decoded one; these are field by field, in a fixed order, with
// no names. Strings and byte strings are their length (uvarint) and
// bytes, integers varints, times Unix seconds and nanoseconds, booleans
// one byte, lists their length and items.
package bincodec

import (
	"encoding/binary"
	"errors"
	"time"
)

// ErrMalformed: what was read is not an encoding of the expected record,
// whole.
var ErrMalformed = errors.New("bincodec: malformed encoding")

// AppendString appends s, its length first.
func AppendString(b []byte, s string) []byte {
	return append(binary.AppendUvarint(b, uint64(len(s))), s...)
}

// AppendStrings appends the list ss, its length first.
func AppendStrings(b []byte, ss []string) []byte {
	b = binary.AppendUvarint(b, uint64(len(ss)))
	for _, s := range ss {
		b = AppendString(b, s)
	}
	return b
}

// AppendTime appends t as Unix seconds and nanoseconds (its location is
// not kept: it reads back in UTC).
func AppendTime(b []byte, t time.Time) []byte {
	return binary.AppendUvarint(binary.AppendVarint(b, t.Unix()), uint64(t.Nanosecond()))
}

// AppendBool appends v as one byte.
func AppendBool(b []byte, v bool) []byte {
	if v {
		return append(b, 1)
	}
	return append(b, 0)
}

// Decoder reads an encoding from its bytes. The first error is kept
// (Err); every read after it returns a zero value, so a record is read
// field by field and checked once at its end.
type Decoder struct {
	p   []byte
	bad bool
}

// NewDecoder reads p.
func NewDecoder(p []byte) *Decoder { return &Decoder{p: p} }

// Err is ErrMalformed when a read failed or bytes are left over, nil when
// everything was read.
func (d *Decoder) Err() error {
	if d.bad || len(d.p) != 0 {
		return ErrMalformed
	}
	return nil
}

// Rest is what is left to read, for a record whose end another decoder
// reads later; ErrMalformed when a read failed.
func (d *Decoder) Rest() ([]byte, error) {
	if d.bad {
		return nil, ErrMalformed
	}
	return d.p, nil
}

// Fail marks the encoding malformed (a value read is impossible).
func (d *Decoder) Fail() { d.bad = true }

// Byte reads one byte.
func (d *Decoder) Byte() byte {
	if len(d.p) == 0 {
		return take(d, byte(0), 0)
	}
	return take(d, d.p[0], 1)
}

// Uvarint reads an unsigned varint.
func (d *Decoder) Uvarint() uint64 {
	v, n := binary.Uvarint(d.p)
	return take(d, v, n)
}

// Varint reads a signed varint.
func (d *Decoder) Varint() int64 {
	v, n := binary.Varint(d.p)
	return take(d, v, n)
}

// take consumes the n bytes that were read as v; the zero value, and d
// gone bad, when they could not be read (n <= 0: too few bytes, or a
// number too large) or d is bad already.
func take[T any](d *Decoder, v T, n int) T {
	if d.bad || n <= 0 {
		d.bad = true
		var zero T
		return zero
	}
	d.p = d.p[n:]
	return v
}

// Len reads a count of items that each take at least one byte: more
// than the bytes left is malformed.
func (d *Decoder) Len() int {
	n := d.Uvarint()
	if n > uint64(len(d.p)) {
		d.bad = true
		return 0
	}
	return int(n)
}

// Bytes reads a byte string (nil when empty); it shares the decoder's
// memory.
func (d *Decoder) Bytes() []byte {
	n := d.Len()
	if d.bad || n == 0 {
		return nil
	}
	v := d.p[:n:n]
	d.p = d.p[n:]
	return v
}

// String reads a string.
func (d *Decoder) String() string { return string(d.Bytes()) }

// Strings reads a list of strings (nil when empty).
func (d *Decoder) Strings() []string {
	n := d.Len()
	if d.bad || n == 0 {
		return nil
	}
	ss := make([]string, n)
	for i := range ss {
		ss[i] = d.String()
	}
	return ss
}

// Time reads a time, in UTC.
func (d *Decoder) Time() time.Time {
	sec, nsec := d.Varint(), d.Uvarint()
	if nsec >= uint64(time.Second) {
		d.bad = true
		return time.Time{}
	}
	return time.Unix(sec, int64(nsec)).UTC()
}

// Bool reads a boolean.
func (d *Decoder) Bool() bool {
	switch d.Byte() {
	case 0:
		return false
	case 1:
		return true
	}
	d.bad = true
	return false
}
