package browsertest

import (
	"context"
	"testing"

	"github.com/chromedp/chromedp"
)

// CreateAdmin goes through the first run of a fresh appliance at base: the
// setup form creates the admin user, and the dashboard opens logged in.
func CreateAdmin(t testing.TB, ctx context.Context, base, user, password string) {
	t.Helper()
	Step(t, ctx, "first run creates the admin",
		chromedp.Navigate(base+"/"),
		chromedp.WaitVisible(chromedp.CSS(`#setup-form`)),
		chromedp.SendKeys(chromedp.CSS(`#username`), user),
		chromedp.SendKeys(chromedp.CSS(`#password`), password),
		chromedp.SendKeys(chromedp.CSS(`#confirm`), password),
		chromedp.Submit(chromedp.CSS(`#setup-form`)),
		chromedp.WaitVisible(chromedp.CSS(`#dashboard`)),
	)
}
