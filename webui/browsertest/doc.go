// Package browsertest drives Debian's headless Chromium for the browser
// tests of the web UI and of the whole appliance: start a fresh browser,
// run steps with a bound, poll and evaluate JavaScript, and save PNG
// screenshots under the calling package's testdata/screenshots.
//
// It is test support only: nothing in the appliance imports it. A test
// that needs Chromium skips loudly without it, and fails under CI=true,
// where .ci/run installs it.
package browsertest
