//go:build !race

package storagetest

// raceScale stretches the suite's bounded waits under the race detector.
const raceScale = 1
