package sqlstore

import (
	"encoding/json"
	"fmt"
	"time"
)

// Values go to the database as plain integers, text and bytes, the same in
// both dialects: times as unix seconds (0 for the zero time), lists as JSON
// arrays, byte slices never NULL.

// unix is t in unix seconds; the zero time is 0.
func unix(t time.Time) int64 {
	if t.IsZero() {
		return 0
	}
	return t.Unix()
}

// list encodes a list as a JSON array ("[]" for none).
func list(ss []string) string {
	if len(ss) == 0 {
		return "[]"
	}
	b, _ := json.Marshal(ss) // cannot fail for []string
	return string(b)
}

// blob is b, with nil made empty for the NOT NULL byte columns.
func blob(b []byte) []byte {
	if b == nil {
		return []byte{}
	}
	return b
}

// scanner is a *sql.Row or *sql.Rows.
type scanner interface {
	Scan(dest ...any) error
}

// timeCol scans unix seconds into a time.Time (UTC; 0 is the zero time).
type timeCol struct{ t *time.Time }

func (c timeCol) Scan(src any) error {
	n, ok := src.(int64)
	if !ok {
		return fmt.Errorf("time column: want an integer, got %T", src)
	}
	if n == 0 {
		*c.t = time.Time{}
	} else {
		*c.t = time.Unix(n, 0).UTC()
	}
	return nil
}

// listCol scans a JSON array into a []string (nil for an empty one).
type listCol struct{ l *[]string }

func (c listCol) Scan(src any) error {
	var b []byte
	switch v := src.(type) {
	case string:
		b = []byte(v)
	case []byte:
		b = v
	default:
		return fmt.Errorf("list column: want text, got %T", src)
	}
	var l []string
	if err := json.Unmarshal(b, &l); err != nil {
		return fmt.Errorf("list column: %w", err)
	}
	if len(l) == 0 {
		l = nil
	}
	*c.l = l
	return nil
}

// bytesCol scans bytes into a fresh slice (nil for an empty one).
type bytesCol struct{ b *[]byte }

func (c bytesCol) Scan(src any) error {
	switch v := src.(type) {
	case []byte:
		if len(v) == 0 {
			*c.b = nil
		} else {
			*c.b = append([]byte(nil), v...)
		}
	case string: // a driver may hand over text for an untyped expression
		if v == "" {
			*c.b = nil
		} else {
			*c.b = []byte(v)
		}
	case nil:
		*c.b = nil
	default:
		return fmt.Errorf("bytes column: want bytes, got %T", src)
	}
	return nil
}
