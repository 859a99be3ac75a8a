package config

import (
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"
)

func env(m map[string]string) func(string) string { return func(k string) string { return m[k] } }

// TestExampleFile keeps config/idp.env.example loadable and equal to the
// defaults it documents.
func TestExampleFile(t *testing.T) {
	c, err := Load(filepath.Join("..", "..", "config", "idp.env.example"), env(nil))
	if err != nil {
		t.Fatal(err)
	}
	d, _ := Load("", env(nil))
	if !reflect.DeepEqual(c, d) {
		t.Fatalf("the example file's values differ from the defaults:\n%+v\n%+v", c, d)
	}
}

func TestDefaultsAndOverrides(t *testing.T) {
	c, err := Load("", env(nil))
	if err != nil {
		t.Fatal(err)
	}
	if c.Issuer != "http://localhost:8080" || c.DatabaseURL != "sqlite://./data/idp.db" ||
		c.SecretKeyFile != DefaultSecretKeyFile || c.SigningAlg != "RS256" || !c.Embedded() || c.Secure() {
		t.Fatalf("defaults: %+v", c)
	}
	file := filepath.Join(t.TempDir(), "idp.env")
	os.WriteFile(file, []byte("# comment\nIDP_MFA_LOCKOUT=2m\nIDP_TOTP_ISSUER=From File\n"), 0o600)
	c, err = Load(file, env(map[string]string{"IDP_TOTP_ISSUER": "From Env"}))
	if err != nil {
		t.Fatal(err)
	}
	if c.MFALockout != 2*time.Minute || c.TOTPIssuer != "From Env" {
		t.Fatalf("file and environment: %+v", c)
	}
}

func TestValidate(t *testing.T) {
	for _, tc := range []struct {
		vars map[string]string
		want string
	}{
		{map[string]string{"IDP_ISSUER": "http://idp.example.com"}, "https"},
		{map[string]string{"IDP_DATABASE_URL": "postgres://db/idp"}, "IDP_SECRET_KEY"},
		{map[string]string{"IDP_DATABASE_URL": "mysql://x"}, "IDP_DATABASE_URL"},
		{map[string]string{"IDP_SIGNING_ALG": "HS256"}, "IDP_SIGNING_ALG"},
		{map[string]string{"IDP_MFA_LOCKOUT": "soon"}, "IDP_MFA_LOCKOUT"},
		{map[string]string{"IDP_LOG_LEVEL": "verbose"}, "IDP_LOG_LEVEL"},
		{map[string]string{"IDP_SHUTDOWN_DRAIN": "5m1s"}, "IDP_SHUTDOWN_DRAIN: 5m1s: must be at most 5m0s"},
		{map[string]string{"IDP_REFRESH_TOKEN_GRACE": "5m1s"}, "IDP_REFRESH_TOKEN_GRACE: 5m1s: must be at most 5m0s"},
		{map[string]string{"IDP_LOG_LEVEL": "info # comment"}, "IDP_LOG_LEVEL"},
		{map[string]string{"IDP_LOG_LEVEL": "warning"}, "IDP_LOG_LEVEL"},
		{map[string]string{"IDP_LOG_LEVEL": "warn+2"}, "IDP_LOG_LEVEL"},
		{map[string]string{"IDP_METRICS_LISTEN": "9100"}, "IDP_METRICS_LISTEN"},
		{map[string]string{"IDP_TRUSTED_PROXIES": "10.0.0.0/8, lb.internal"}, "IDP_TRUSTED_PROXIES"},
		{map[string]string{"IDP_METRICS_LISTEN": "127.0.0.1:8080"}, "IDP_METRICS_LISTEN"},
		{map[string]string{"IDP_BRAND_COLOR": "red"}, "IDP_BRAND_COLOR"},
		{map[string]string{"IDP_BRAND_COLOR": "#0b5cad;}body{display:none"}, "IDP_BRAND_COLOR"},
		{map[string]string{"IDP_BRAND_COLOR": "#0b5cgd"}, "IDP_BRAND_COLOR"},
		{map[string]string{"IDP_BRAND_COLOR": "#fff"}, "IDP_BRAND_COLOR"},
		{map[string]string{"IDP_BRAND_COLOR": "#ffcc00"}, "4.5:1"}, // too light for white text
		{map[string]string{"IDP_BRAND_LOGO_URL": "http://cdn.example.com/logo.png"}, "IDP_BRAND_LOGO_URL"},
		{map[string]string{"IDP_BRAND_LOGO_URL": "//cdn.example.com/logo.png"}, "IDP_BRAND_LOGO_URL"},
		{map[string]string{"IDP_BRAND_LOGO_URL": "javascript:alert(1)"}, "IDP_BRAND_LOGO_URL"},
		{map[string]string{"IDP_BRAND_LOGO_URL": "logo.png"}, "IDP_BRAND_LOGO_URL"},
		{map[string]string{"IDP_BRAND_LOGO_URL": "/logo.png\"onerror=x"}, "IDP_BRAND_LOGO_URL"},
		{map[string]string{"IDP_ARGON2_MEMORY_KIB": "1048576", "IDP_ARGON2_MAX_CONCURRENT": "8"}, "IDP_ARGON2_MAX_CONCURRENT: 8: must be at most 4 with IDP_ARGON2_MEMORY_KIB=1048576"},
	} {
		_, err := Load("", env(tc.vars))
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%v: error %v, want one naming %s", tc.vars, err, tc.want)
		}
	}
	if _, err := Load("", env(map[string]string{"IDP_ISSUER": "https://id.example.com",
		"IDP_DATABASE_URL": "postgres://db/idp", "IDP_SECRET_KEY_FILE": "/etc/idp/key",
		"IDP_METRICS_LISTEN": "10.0.0.5:9100", "IDP_TRUSTED_PROXIES": "10.0.0.0/8, 192.0.2.7 ,::1"})); err != nil {
		t.Errorf("production configuration refused: %v", err)
	}
	for _, vars := range []map[string]string{
		{"IDP_BRAND_COLOR": "#0B5CAD", "IDP_BRAND_LOGO_URL": "/static/logo.svg"},
		{"IDP_BRAND_COLOR": "#1f6f43", "IDP_BRAND_LOGO_URL": "https://cdn.example.com/logo.png"},
		{"IDP_BRAND_COLOR": "", "IDP_BRAND_NAME": "ギガらくカメラ"},
		{"IDP_LOG_LEVEL": "debug"},
		{"IDP_LOG_LEVEL": "WARN"},
		{"IDP_LOG_LEVEL": "Error"},
	} {
		if _, err := Load("", env(vars)); err != nil {
			t.Errorf("%v refused: %v", vars, err)
		}
	}
}

func TestContrastOnWhite(t *testing.T) {
	for _, tc := range []struct {
		color    string
		min, max float64
	}{
		{"#000000", 20.9, 21.1}, // the extremes of WCAG's scale
		{"#ffffff", 0.99, 1.01},
		{"#767676", 4.5, 4.6}, // the well-known lightest AA grey on white
		{"#777777", 4.4, 4.49},
	} {
		r, g, b, ok := ParseHexColor(tc.color)
		if !ok {
			t.Fatalf("%s not parsed", tc.color)
		}
		if c := ContrastOnWhite(r, g, b); c < tc.min || c > tc.max {
			t.Errorf("%s: contrast %.3f, want %.2f..%.2f", tc.color, c, tc.min, tc.max)
		}
	}
}

// TestBrandsFile: IDP_BRANDS_FILE is read into Brands; a file that cannot
// be read, is not JSON, has a misspelt field, or breaks a rule is refused
// with a message that says which brand and what.
func TestBrandsFile(t *testing.T) {
	dir := t.TempDir()
	load := func(content string) (Config, error) {
		t.Helper()
		file := filepath.Join(dir, "brands.json")
		if err := os.WriteFile(file, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
		return Load("", env(map[string]string{"IDP_BRANDS_FILE": file}))
	}
	c, err := load(`[{"id": "giga", "name": "ギガらくカメラ", "color": "#1f6f43", "logo_url": "/static/giga.svg", "clients": ["viewer", "viewer-admin"]},
		{"id": "door", "name": "Door Cam", "clients": ["door"]}]`)
	if err != nil {
		t.Fatal(err)
	}
	want := []Brand{
		{ID: "giga", Name: "ギガらくカメラ", Color: "#1f6f43", LogoURL: "/static/giga.svg", Clients: []string{"viewer", "viewer-admin"}},
		{ID: "door", Name: "Door Cam", Clients: []string{"door"}},
	}
	if !reflect.DeepEqual(c.Brands, want) {
		t.Fatalf("brands %+v, want %+v", c.Brands, want)
	}
	for _, tc := range []struct{ content, want string }{
		{`{"id": "giga"}`, "cannot unmarshal"},
		{`[{"id": "giga", "name": "G", "colour": "#1f6f43", "clients": ["a"]}]`, `unknown field "colour"`},
		{`[{"id": "Giga!", "name": "G", "clients": ["a"]}]`, `id "Giga!"`},
		{`[{"id": "g", "name": "G", "clients": ["a"]}, {"id": "g", "name": "H", "clients": ["b"]}]`, "used twice"},
		{`[{"id": "g", "name": "", "clients": ["a"]}]`, "needs a name"},
		{`[{"id": "g", "name": "G", "clients": []}]`, "at least one client"},
		{`[{"id": "g", "name": "G", "clients": ["a"]}, {"id": "h", "name": "H", "clients": ["a"]}]`, `client "a" is already in brand "g"`},
		{`[{"id": "g", "name": "G", "color": "#ffff00", "clients": ["a"]}]`, `brand "g": color: "#ffff00" has a contrast`},
		{`[{"id": "g", "name": "G", "logo_url": "javascript:alert(1)", "clients": ["a"]}]`, `brand "g": logo_url`},
		{`[] []`, "more than one JSON value"},
	} {
		if _, err := load(tc.content); err == nil || !strings.Contains(err.Error(), tc.want) || !strings.Contains(err.Error(), "IDP_BRANDS_FILE") {
			t.Errorf("%s: error %v, want one about %s", tc.content, err, tc.want)
		}
	}
	if _, err := Load("", env(map[string]string{"IDP_BRANDS_FILE": filepath.Join("..", "..", "config", "brands.example.json")})); err != nil {
		t.Errorf("config/brands.example.json: %v", err)
	}
	if _, err := Load("", env(map[string]string{"IDP_BRANDS_FILE": filepath.Join(dir, "missing.json")})); err == nil {
		t.Error("a missing brands file is accepted")
	}
}

// TestNumbers: a number is taken as written, 0 included, or refused; it is
// never skipped (leaving the default) nor wrapped around.
func TestNumbers(t *testing.T) {
	for _, tc := range []struct {
		key, value string
		want       string              // an error naming this; "" for none
		check      func(c Config) bool // for a value accepted
	}{
		{"IDP_ARGON2_ITERATIONS", "0", "IDP_ARGON2_ITERATIONS", nil},
		{"IDP_ARGON2_MEMORY_KIB", "0", "IDP_ARGON2_MEMORY_KIB", nil},
		{"IDP_ARGON2_MEMORY_KIB", "4294975488", "IDP_ARGON2_MEMORY_KIB", nil}, // 2^32 + 8192
		{"IDP_ARGON2_ITERATIONS", "4294967297", "IDP_ARGON2_ITERATIONS", nil}, // 2^32 + 1
		{"IDP_ARGON2_MEMORY_KIB", "-1", "IDP_ARGON2_MEMORY_KIB", nil},
		{"IDP_ARGON2_MEMORY_KIB", "8191", "IDP_ARGON2_MEMORY_KIB", nil},
		{"IDP_ARGON2_ITERATIONS", "two", "IDP_ARGON2_ITERATIONS", nil},
		{"IDP_MFA_MAX_FAILURES", "0", "failure limits", nil},
		{"IDP_RESET_MAX_PER_IP", "-3", "IDP_RESET_MAX_PER_IP", nil},
		{"IDP_MFA_LOCKOUT", "0", "IDP_MFA_LOCKOUT", nil},
		{"IDP_MFA_LOCKOUT", "0s", "IDP_MFA_LOCKOUT", nil},
		{"IDP_ARGON2_MEMORY_KIB", "8192", "", func(c Config) bool { return c.ArgonMemoryKiB == 8192 }},
		// Upper bounds: a hash takes at most 4 GiB, and so do the hashes
		// running at once; at most 100 passes.
		{"IDP_ARGON2_MEMORY_KIB", "4194304", "", func(c Config) bool { return c.ArgonMemoryKiB == 4194304 }},
		{"IDP_ARGON2_MEMORY_KIB", "4194305", "IDP_ARGON2_MEMORY_KIB: 4194305 KiB (4096 MiB): must be at most 4194304 (4096 MiB) per hash", nil},
		{"IDP_ARGON2_MEMORY_KIB", "19456000", "IDP_ARGON2_MEMORY_KIB: 19456000 KiB (19000 MiB): must be at most 4194304", nil},
		{"IDP_ARGON2_MEMORY_KIB", "4294967295", "must be at most 4194304", nil},
		{"IDP_ARGON2_ITERATIONS", "100", "", func(c Config) bool { return c.ArgonIterations == 100 }},
		{"IDP_ARGON2_ITERATIONS", "200", "IDP_ARGON2_ITERATIONS: 200: must be at most 100", nil},
		{"IDP_ARGON2_ITERATIONS", "4294967295", "IDP_ARGON2_ITERATIONS: 4294967295: must be at most 100", nil},
		{"IDP_ARGON2_MAX_CONCURRENT", "215", "", func(c Config) bool { return c.ArgonMaxConcurrent == 215 }}, // 215 × 19 MiB < 4 GiB
		{"IDP_ARGON2_MAX_CONCURRENT", "216", "IDP_ARGON2_MAX_CONCURRENT: 216: must be at most 215 with IDP_ARGON2_MEMORY_KIB=19456, so that the hashes running at once take at most 4096 MiB", nil},
		{"IDP_ARGON2_MAX_CONCURRENT", "9223372036854775807", "IDP_ARGON2_MAX_CONCURRENT", nil},
		{"IDP_ARGON2_ITERATIONS", " 1 ", "", func(c Config) bool { return c.ArgonIterations == 1 }},
		{"IDP_ARGON2_MAX_CONCURRENT", "0", "", func(c Config) bool { return c.ArgonMaxConcurrent == 0 }},
		{"IDP_ARGON2_MAX_CONCURRENT", "3", "", func(c Config) bool { return c.ArgonMaxConcurrent == 3 }},
		// A drain may be 0 (none), unlike the other durations.
		{"IDP_SHUTDOWN_DRAIN", "0", "", func(c Config) bool { return c.ShutdownDrain == 0 }},
		{"IDP_REFRESH_TOKEN_GRACE", "0s", "", func(c Config) bool { return c.RefreshTokenGrace == 0 }},
		{"IDP_REFRESH_TOKEN_GRACE", "30s", "", func(c Config) bool { return c.RefreshTokenGrace == 30*time.Second }},
		{"IDP_SHUTDOWN_DRAIN", "0s", "", func(c Config) bool { return c.ShutdownDrain == 0 }},
		{"IDP_SHUTDOWN_DRAIN", "15s", "", func(c Config) bool { return c.ShutdownDrain == 15*time.Second }},
		{"IDP_SHUTDOWN_DRAIN", "5m", "", func(c Config) bool { return c.ShutdownDrain == 5*time.Minute }},
		{"IDP_SHUTDOWN_DRAIN", "-5s", `IDP_SHUTDOWN_DRAIN: "-5s" is not a duration like 10s, or 0 for none`, nil},
		{"IDP_SHUTDOWN_DRAIN", "10", `IDP_SHUTDOWN_DRAIN: "10" is not a duration`, nil},
		{"IDP_SHUTDOWN_DRAIN", "soon", "IDP_SHUTDOWN_DRAIN", nil},
		// Under a second is a slip (the store keeps whole seconds).
		{"IDP_FLOW_LIFETIME", "15ms", `IDP_FLOW_LIFETIME: "15ms" is under a second (15m?)`, nil},
		{"IDP_AUTH_CODE_TTL", "999ms", "IDP_AUTH_CODE_TTL", nil},
		{"IDP_MAIL_POLL_INTERVAL", "500us", `IDP_MAIL_POLL_INTERVAL: "500us" is under a second`, nil},
		{"IDP_SHUTDOWN_DRAIN", "10ms", "IDP_SHUTDOWN_DRAIN", nil},
		{"IDP_AUTH_CODE_TTL", "1s", "", func(c Config) bool { return c.AuthCodeTTL == time.Second }},
		// The otpauth label splits at a colon.
		{"IDP_TOTP_ISSUER", "Camera: Viewer", "IDP_TOTP_ISSUER", nil},
		{"IDP_TOTP_ISSUER", "カメラ ID", "", func(c Config) bool { return c.TOTPIssuer == "カメラ ID" }},
	} {
		c, err := Load("", env(map[string]string{tc.key: tc.value}))
		switch {
		case tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)):
			t.Errorf("%s=%s: error %v, want one naming %s (memory %d, iterations %d)", tc.key, tc.value, err, tc.want, c.ArgonMemoryKiB, c.ArgonIterations)
		case tc.want == "" && err != nil:
			t.Errorf("%s=%s refused: %v", tc.key, tc.value, err)
		case tc.want == "" && !tc.check(c):
			t.Errorf("%s=%s: not taken: %+v", tc.key, tc.value, c)
		}
	}
}

// TestEnvFile: an IDP_CONFIG file is KEY=VALUE lines, "export KEY=VALUE"
// included (a file a shell can source), # comments and blank lines; any
// other line is an error naming the file's line.
func TestEnvFile(t *testing.T) {
	dir := t.TempDir()
	for i, tc := range []struct {
		content string
		want    string // an error containing this; "" for none
	}{
		{"export IDP_LOG_LEVEL=debug\n", ""},
		{"  export\tIDP_LOG_LEVEL = 'debug'\n", ""},
		{"# a comment\n\n  # another\nIDP_LOG_LEVEL=\"debug\"\n", ""},
		{"IDP_MFA_LOCKOUT=1m\nIDP_LOG_LEVEL debug\n", ":2: want KEY=VALUE"},
		{"IDP_MFA_LOCKOUT=1m\nexport IDP_LOG_LEVEL\n", ":2: want KEY=VALUE"},
		{"\n\nexport  =debug\n", ":3: want KEY=VALUE"},
		{"=debug\n", ":1: want KEY=VALUE"},
		{"IDP LOG_LEVEL=debug\n", ":1: want KEY=VALUE"},
		{"set IDP_LOG_LEVEL=debug\n", ":1: want KEY=VALUE"},
		{"-IDP_LOG_LEVEL=debug\n", ":1: want KEY=VALUE"},
		// Quotes hold the value as written; after them, only a comment.
		{"IDP_LOG_LEVEL='debug' # more output\n", ""},
		{"IDP_LOG_LEVEL=\"debug\"\t#\n", ""},
		{"IDP_LOG_LEVEL=\"debug\n", ":1: IDP_LOG_LEVEL: the value's \" quote is not closed"},
		{"IDP_LOG_LEVEL='debug\"\n", ":1: IDP_LOG_LEVEL: the value's ' quote is not closed"},
		{"\nIDP_LOG_LEVEL=\"debug\" info\n", `:2: IDP_LOG_LEVEL: "info" after the value's closing quote`},
		// Unquoted, a # after a space would be cut by a shell: refused.
		{"IDP_LOG_LEVEL=debug # more output\n", ":1: IDP_LOG_LEVEL: a # after a space in the value"},
		{"IDP_LOG_LEVEL=debug\t#\n", ":1: IDP_LOG_LEVEL: a # after a space in the value"},
	} {
		file := filepath.Join(dir, "idp.env")
		if err := os.WriteFile(file, []byte(tc.content), 0o600); err != nil {
			t.Fatal(err)
		}
		c, err := Load(file, env(nil))
		switch {
		case tc.want != "" && (err == nil || !strings.Contains(err.Error(), file+tc.want)):
			t.Errorf("%d: %q: error %v, want one with %s", i, tc.content, err, tc.want)
		case tc.want == "" && err != nil:
			t.Errorf("%d: %q refused: %v", i, tc.content, err)
		case tc.want == "" && c.LogLevel != "debug":
			t.Errorf("%d: %q: log level %q, want debug", i, tc.content, c.LogLevel)
		}
	}
}

// TestEnvValue: what a file's values read as, # and quotes within them.
func TestEnvValue(t *testing.T) {
	for _, tc := range []struct {
		in, want string
		refused  bool
	}{
		{in: "#0b5cad", want: "#0b5cad"},             // a # that starts the value
		{in: "pass#word", want: "pass#word"},         // or is inside it
		{in: ` "Camera # ID" `, want: "Camera # ID"}, // quoted: as written
		{in: `"say 'hi'"`, want: "say 'hi'"},         // the other quote inside
		{in: `''`, want: ""},
		{in: `"a\nb"`, want: `a\nb`},   // no escapes,
		{in: `'it''s'`, refused: true}, // so no quote inside its own kind
		{in: "pass#word # my comment", refused: true},
		{in: " # set me", refused: true}, // a shell reads an empty value
		{in: "#0b5cad # brand", refused: true},
		{in: `"abc"#x`, refused: true}, // a shell reads abc#x
		{in: `"abc" #x`, want: "abc"},
	} {
		got, err := envValue(tc.in)
		if tc.refused != (err != nil) || got != tc.want {
			t.Errorf("envValue(%q) = %q, %v; want %q (refused %v)", tc.in, got, err, tc.want, tc.refused)
		}
	}
}

// TestUnknownNames: an IDP_ name that is not a setting is an error in an
// IDP_CONFIG file (naming the line, and the setting when it is close), and
// a warning in the environment, where other programs may set IDP_ names.
func TestUnknownNames(t *testing.T) {
	dir := t.TempDir()
	for i, tc := range []struct {
		file    string   // the IDP_CONFIG file's content; "" for none
		environ []string // the environment
		err     string   // an error containing this; "" for none
		warn    []string // the warnings, each containing its string
	}{
		{file: "IDP_LOG_LEVEL=warn\nIDP_TRUSTED_PROXY=10.0.0.0/8\n", err: ":2: IDP_TRUSTED_PROXY is not a setting (did you mean IDP_TRUSTED_PROXIES?)"},
		{file: "IDP_SECRETKEY_FILE=/etc/idp/key\n", err: ":1: IDP_SECRETKEY_FILE is not a setting (did you mean IDP_SECRET_KEY_FILE?)"},
		{file: "export idp_issuer=https://id.example.com\n", err: ":1: idp_issuer is not a setting (did you mean IDP_ISSUER?)"},
		{file: "IDP_WIDGETS=3\n", err: ":1: IDP_WIDGETS is not a setting"},
		{file: "IDP_TEST_DATABASE_URL=postgres://db/test\n", err: ":1: IDP_TEST_DATABASE_URL is not a setting"},
		{file: "IDP_MFA_LOCKOUT=soon\nIDP_LOGLEVEL=debug\n", err: ":2: IDP_LOGLEVEL is not a setting (did you mean IDP_LOG_LEVEL?)"},
		// Names not ours are somebody else's (a shared EnvironmentFile).
		{file: "GOMEMLIMIT=1GiB\nIDP_LOG_LEVEL=debug\n"},
		{environ: []string{"IDP_TRUSTED_PROXY=10.0.0.0/8", "IDP_LOG_LEVEL=debug", "IDP_FROB=1"},
			warn: []string{"IDP_FROB is set in the environment but is not a setting; it is ignored",
				"IDP_TRUSTED_PROXY is set in the environment but is not a setting (did you mean IDP_TRUSTED_PROXIES?)"}},
		{environ: []string{"IDP_CONFIG=/etc/idp.env", "IDP_TEST_DATABASE_URL=postgres://db/test", "IDP_TEST_X=", "PATH=/bin", "IDP_ISSUER=http://localhost:9000"}},
		{file: "IDP_LOG_LEVEL=debug\n", environ: []string{"IDP_SECRETKEY_FILE=/k"}, warn: []string{"IDP_SECRETKEY_FILE is set in the environment but is not a setting (did you mean IDP_SECRET_KEY_FILE?)"}},
	} {
		file := ""
		if tc.file != "" {
			file = filepath.Join(dir, "idp.env")
			if err := os.WriteFile(file, []byte(tc.file), 0o600); err != nil {
				t.Fatal(err)
			}
		}
		c, err := LoadEnviron(file, tc.environ)
		if tc.err != "" {
			if err == nil || !strings.Contains(err.Error(), file+tc.err) {
				t.Errorf("%d: error %v, want one with %s", i, err, tc.err)
			}
			continue
		}
		if err != nil {
			t.Errorf("%d: refused: %v", i, err)
			continue
		}
		if len(c.Warnings) != len(tc.warn) {
			t.Errorf("%d: warnings %q, want %q", i, c.Warnings, tc.warn)
			continue
		}
		for j, w := range tc.warn {
			if !strings.Contains(c.Warnings[j], w) {
				t.Errorf("%d: warning %q, want %q", i, c.Warnings[j], w)
			}
		}
	}
	// The environment is read as by Load: values are taken, the first of a
	// name twice wins, and Load (which cannot list names) never warns.
	c, err := LoadEnviron("", []string{"IDP_LOG_LEVEL=debug", "IDP_LOG_LEVEL=verbose", "IDP_TRUSTED_PROXIES=10.0.0.0/8"})
	if err != nil || c.LogLevel != "debug" || c.TrustedProxies != "10.0.0.0/8" {
		t.Errorf("environment not read: %v %+v", err, c)
	}
	if c, err := Load("", env(map[string]string{"IDP_TRUSTED_PROXY": "10.0.0.0/8"})); err != nil || c.Warnings != nil {
		t.Errorf("Load: %v, warnings %q", err, c.Warnings)
	}
}

// TestIssuerWithoutPath: the routes are at the root, so an issuer with a
// path (discovery would name endpoints under it that answer 404) is
// refused with one line saying what an issuer must be; a port is fine.
func TestIssuerWithoutPath(t *testing.T) {
	for _, iss := range []string{
		"https://example.com/idp",
		"https://example.com/idp/oidc",
		"https://example.com:8443/idp",
		"http://localhost:8080/idp",
		"https://example.com/%69dp",
		"https://admin@example.com",
	} {
		_, err := Load("", env(map[string]string{"IDP_ISSUER": iss}))
		if err == nil || !strings.Contains(err.Error(), "IDP_ISSUER") ||
			!strings.Contains(err.Error(), "scheme and host (and port) only") || strings.Contains(err.Error(), "\n") {
			t.Errorf("IDP_ISSUER=%s: error %v, want one line saying it must be a scheme and host (and port) only", iss, err)
		}
	}
	// An empty query or fragment too: the endpoints would be built after it.
	for _, iss := range []string{"https://example.com/?", "https://example.com#", "https://example.com?x=1", "https://example.com/#a"} {
		if _, err := Load("", env(map[string]string{"IDP_ISSUER": iss})); err == nil || !strings.Contains(err.Error(), "without query or fragment") {
			t.Errorf("IDP_ISSUER=%s: error %v, want it refused for its query or fragment", iss, err)
		}
	}
	for _, iss := range []string{"https://example.com", "https://id.example.com:8443", "http://localhost:8080", "http://127.0.0.1:9000",
		"https://example.com/", "http://localhost:8080/"} {
		c, err := Load("", env(map[string]string{"IDP_ISSUER": iss}))
		if err != nil {
			t.Errorf("IDP_ISSUER=%s refused: %v", iss, err)
		} else if c.Issuer != iss || c.BaseURL() != strings.TrimSuffix(iss, "/") {
			t.Errorf("IDP_ISSUER=%s: issuer %q, base URL %q", iss, c.Issuer, c.BaseURL())
		}
	}
}
