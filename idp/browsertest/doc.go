// Package browsertest holds the browser tests of the hosted pages: the
// provider runs in-process, the demo camera viewer (cmd/demo-viewer) as a
// subprocess, and a headless Chromium (Debian's chromium, driven through
// the DevTools protocol by chromedp) does what a customer does, at phone
// (375x812) and desktop (1280x800) sizes. Every page it passes through is
// checked with axe-core and saved as a screenshot under
// artifacts/screenshots/<test>/.
//
// Without Chromium the tests skip with a "SKIP-CHROMIUM:" message; under
// CI=true they fail instead. CHROMIUM names another browser binary.
//
// The package has no code of its own: everything is in its _test.go files,
// so nothing of it (nor chromedp) is linked into cmd/idp.
package browsertest
