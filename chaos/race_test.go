//go:build race

package chaos

// raceEnabled: this test binary has the race detector, and so do the
// chatd nodes it builds.
const raceEnabled = true
