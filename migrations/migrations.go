// Package migrations holds the database schema of both stores as numbered
// SQL files, embedded in the binary: sqlite/NNNN_name.sql and
// postgres/NNNN_name.sql. A migration is never edited once released; a
// change is a new file with the next number, in both directories.
package migrations

import (
	"embed"
	"fmt"
	"io/fs"
	"path"
	"sort"
	"strconv"
	"strings"
)

// FS holds the migration files of every dialect.
//
//go:embed sqlite/*.sql postgres/*.sql
var FS embed.FS

// Migration is one schema change.
type Migration struct {
	Version int64  // the file name's leading number
	Name    string // the file name, e.g. "0001_init.sql"
	SQL     string // the statements, run as one script in one transaction
}

// List returns the migrations of dialect ("sqlite" or "postgres") in
// version order. It fails on a file name without a version number and on
// two files with the same version.
func List(dialect string) ([]Migration, error) {
	entries, err := fs.ReadDir(FS, dialect)
	if err != nil {
		return nil, fmt.Errorf("migrations: dialect %q: %w", dialect, err)
	}
	var ms []Migration
	for _, e := range entries {
		if e.IsDir() || !strings.HasSuffix(e.Name(), ".sql") {
			continue
		}
		num, _, _ := strings.Cut(e.Name(), "_")
		v, err := strconv.ParseInt(num, 10, 64)
		if err != nil || v <= 0 {
			return nil, fmt.Errorf("migrations: %s/%s: name must start with a positive version number and '_'", dialect, e.Name())
		}
		b, err := fs.ReadFile(FS, path.Join(dialect, e.Name()))
		if err != nil {
			return nil, fmt.Errorf("migrations: %w", err)
		}
		ms = append(ms, Migration{Version: v, Name: e.Name(), SQL: string(b)})
	}
	sort.Slice(ms, func(i, j int) bool { return ms[i].Version < ms[j].Version })
	for i := 1; i < len(ms); i++ {
		if ms[i].Version == ms[i-1].Version {
			return nil, fmt.Errorf("migrations: %s: %s and %s have the same version", dialect, ms[i-1].Name, ms[i].Name)
		}
	}
	if len(ms) == 0 {
		return nil, fmt.Errorf("migrations: dialect %q has no migrations", dialect)
	}
	return ms, nil
}
