package templates

import (
	"strings"

	"github.com/a-h/templ"
)

// errorID is the id of a form's error message, referenced by the fields'
// aria-describedby.
const errorID = "form-error"

// brandName is the product name shown in the header and the title.
func brandName(p Page) string {
	if p.Brand.ProductName != "" {
		return p.Brand.ProductName
	}
	return T(p.Lang, "brand_default")
}

// pageTitle is "<page title> | <product name>"; Page.Title overrides the
// page's own title.
func pageTitle(p Page, title string) string {
	if p.Title != "" {
		title = p.Title
	}
	return title + " | " + brandName(p)
}

// pageLang is the page's language: "en", or "ja" for anything else.
func pageLang(p Page) string {
	if p.Lang == LangEN {
		return LangEN
	}
	return LangJA
}

// qrSrc lets the QR code's PNG data URL through templ's URL sanitizer (which
// refuses data: URLs) and nothing else.
func qrSrc(s string) templ.SafeURL {
	if strings.HasPrefix(s, "data:image/png;base64,") && !strings.ContainsAny(s, "\"'<> \t\r\n") {
		return templ.SafeURL(s)
	}
	return templ.FailedSanitizationURL
}

// unusedCodes counts the codes not used yet.
func unusedCodes(codes []BackupCode) int {
	n := 0
	for _, c := range codes {
		if !c.Used {
			n++
		}
	}
	return n
}

func newPasswordHeading(p NewPasswordPage) string {
	if p.AskCurrent {
		return "change_password_heading"
	}
	return "reset_password_heading"
}
