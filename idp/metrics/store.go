package metrics

import (
	"errors"
	"time"

	"github.com/kamera-id/idp/idp/store"
)

// Store times every call of the store it wraps. It embeds the store, so the
// methods it does not wrap (Close) and any interface the store also
// implements through them work as before; type assertions for other
// interfaces must be made on Unwrap().
type Store struct {
	store.Store
	rec Recorder
}

// WrapStore returns st timed by rec (st itself when rec is Nop or nil).
func WrapStore(st store.Store, rec Recorder) store.Store {
	if _, ok := rec.(Nop); ok || rec == nil {
		return st
	}
	return &Store{Store: st, rec: rec}
}

// Unwrap returns the wrapped store.
func (s *Store) Unwrap() store.Store { return s.Store }

func (s *Store) done(op string, start time.Time, err error) {
	failed := err != nil && !errors.Is(err, store.ErrNotFound) && !errors.Is(err, store.ErrConsumed) &&
		!errors.Is(err, store.ErrDuplicate)
	s.rec.StoreCall(op, time.Since(start), failed)
}
