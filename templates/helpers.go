package templates

import (
	"net/url"
	"strconv"
	"strings"

	"github.com/a-h/templ"
)

// errorID is the id of a form's error message, referenced by the fields'
// aria-describedby.
const errorID = "form-error"

// brandName is the product name shown in the header and the title.
// brandSheet is the style sheet of the brand's colour.
func brandSheet(b Brand) string {
	if b.ID == "" {
		return "/static/brand.css"
	}
	return "/static/brand.css?b=" + b.ID // a-z, 0-9 and - (config.Validate)
}

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

// otpauthURL is an otpauth://totp/ URI as a link (templ refuses schemes it
// does not know); anything else fails sanitization.
func otpauthURL(s string) templ.SafeURL {
	if strings.HasPrefix(s, "otpauth://totp/") && !strings.ContainsAny(s, "\"'<> \t\r\n") {
		return templ.SafeURL(s)
	}
	return templ.FailedSanitizationURL
}

// orLogin is a link back to a login: u, a path the handler made, or /login.
func orLogin(u string) templ.SafeURL {
	if u == "" || !strings.HasPrefix(u, "/login") {
		return "/login"
	}
	return templ.SafeURL(u)
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

// codesFile is the text of the backup codes' download: the product, what
// the codes are, then one code per line (CRLF, for every editor).
func codesFile(p Page, codes []string) string {
	var sb strings.Builder
	sb.WriteString(brandName(p) + " - " + T(p.Lang, "backup_codes_heading") + "\r\n")
	sb.WriteString(T(p.Lang, "codes_file_intro") + "\r\n\r\n")
	for _, c := range codes {
		sb.WriteString(c + "\r\n")
	}
	return sb.String()
}

// codesDownload is a data: URL of codesFile, for a link with the download
// attribute: it saves the codes as a text file without JavaScript and
// without another request that would need the password again.
func codesDownload(p Page, codes []string) templ.SafeURL {
	return templ.SafeURL("data:text/plain;charset=utf-8," + url.PathEscape(codesFile(p, codes)))
}

// unusedCodeList is the codes not used yet, for the download.
func unusedCodeList(codes []BackupCode) []string {
	var out []string
	for _, c := range codes {
		if !c.Used {
			out = append(out, c.Code)
		}
	}
	return out
}

func newPasswordHeading(p NewPasswordPage) string {
	if p.AskCurrent {
		return "change_password_heading"
	}
	return "reset_password_heading"
}

// newPasswordError is the error the new-password fields are marked with:
// none when it is about the current password.
func newPasswordError(p NewPasswordPage) string {
	if p.CurrentWrong {
		return ""
	}
	return p.Error
}

// appID is the id of the i-th app's name on the apps page, which its
// revoke button refers to (aria-describedby): each button says whose access
// it removes.
func appID(i int) string { return "app-" + strconv.Itoa(i) }
