package metrics

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	"github.com/kamera-id/idp/idp/store"
)

// recorder keeps what it was told.
type recorder struct {
	Nop
	mu    sync.Mutex
	reqs  []string
	calls []string
}

func (r *recorder) Request(route, method string, status int, _ time.Duration) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.reqs = append(r.reqs, fmt.Sprintf("%s %s %d", method, route, status))
}

func (r *recorder) StoreCall(op string, _ time.Duration, failed bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.calls = append(r.calls, fmt.Sprintf("%s %v", op, failed))
}

func TestInstrumentLabelsByRoute(t *testing.T) {
	rec := &recorder{}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /login", func(w http.ResponseWriter, r *http.Request) {
		SetRoute(r, "GET /login")
		w.WriteHeader(http.StatusTeapot)
	})
	mux.HandleFunc("GET /ok", func(w http.ResponseWriter, r *http.Request) {
		SetRoute(r, "GET /ok")
		_, _ = w.Write([]byte("ok"))
	})
	h := Instrument(rec, mux)
	for _, u := range []string{"/login?flow=secret", "/ok", "/no/such/path/123"} {
		h.ServeHTTP(httptest.NewRecorder(), httptest.NewRequest("GET", u, nil))
	}
	// A made-up method is "other": a client cannot add label values.
	h.ServeHTTP(httptest.NewRecorder(), httptest.NewRequest("XXXXXXXXXX1", "/ok", nil))
	want := []string{"GET GET /login 418", "GET GET /ok 200", "GET other 404", "other other 405"}
	if fmt.Sprint(rec.reqs) != fmt.Sprint(want) {
		t.Fatalf("requests %q, want %q", rec.reqs, want)
	}
	// Metrics off: the handler is not wrapped at all.
	if got := Instrument(Nop{}, mux); fmt.Sprintf("%p", got) != fmt.Sprintf("%p", mux) {
		t.Fatal("Nop wrapped the handler")
	}
}

// failingStore answers every call with its error.
type failingStore struct {
	store.Store
	err error
}

func (f failingStore) GetUser(context.Context, string) (*store.User, error) { return nil, f.err }

func TestStoreCallsTimed(t *testing.T) {
	rec := &recorder{}
	for _, err := range []error{nil, store.ErrNotFound, fmt.Errorf("get: %w", store.ErrUnavailable), errors.New("boom")} {
		st := WrapStore(failingStore{err: err}, rec)
		if _, got := st.GetUser(context.Background(), "u"); !errors.Is(got, err) {
			t.Fatalf("error %v not passed through: %v", err, got)
		}
	}
	want := []string{"GetUser false", "GetUser false", "GetUser true", "GetUser true"}
	if fmt.Sprint(rec.calls) != fmt.Sprint(want) {
		t.Fatalf("calls %q, want %q", rec.calls, want)
	}
	if st := WrapStore(failingStore{}, Nop{}); st != (failingStore{}) {
		t.Fatal("Nop wrapped the store")
	}
}
