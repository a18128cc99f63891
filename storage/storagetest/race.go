//go:build race

package storagetest

// raceScale stretches the suite's bounded waits under the race detector,
// which slows everything several times.
const raceScale = 4
