package runc

// IsGone reports whether err, from the runtime invocation op, only says
// that the container is already gone (or, for kill, no longer running):
// Kill and Delete return nil for that, so an observer should not count it
// as a failure either.
func IsGone(op string, err error) bool {
	if err == nil {
		return false
	}
	switch op {
	case "kill":
		return isNotExist(err) || isNotRunning(err)
	case "delete":
		return isNotExist(err)
	}
	return false
}
