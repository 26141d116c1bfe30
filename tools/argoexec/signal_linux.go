// The Linux half of the signal helpers in Argo's workflow/executor/osspecific package, written
// for avfleet. The published argo-workflows v4.0.5 module holds only the darwin and windows
// files of this set, so argoexec does not build for Linux from the module proxy as it is;
// tools/build-e2e.sh adds this file to its writable copy of the module before building.
// Behaviour is what Argo's executor asks of these functions on Unix: a step runs in its own
// process group, signals go to that group, and the step's exit status comes back as an ExitErr.
package osspecific

import (
	"os"
	"syscall"

	"github.com/argoproj/argo-workflows/v4/util/errors"
)

// Term asks a step's process to stop.
var Term = syscall.SIGTERM

// CanIgnoreSignal says which signals the executor need not pass on to the step.
func CanIgnoreSignal(sig os.Signal) bool {
	switch sig {
	case syscall.SIGCHLD, syscall.SIGURG:
		return true
	}
	return false
}

// Kill signals pid's process group when it has one (so what the step forked gets it too),
// else pid alone.
func Kill(pid int, sig syscall.Signal) error {
	if group, err := syscall.Getpgid(pid); err == nil {
		return syscall.Kill(-group, sig)
	}
	return syscall.Kill(pid, sig)
}

// Setpgid starts the step in a process group of its own.
func Setpgid(attr *syscall.SysProcAttr) {
	attr.Setpgid = true
}

// Wait releases the step's process and reaps children until it is the one that ended: the
// executor runs as a container's first process, so orphans of the step are its to reap too.
func Wait(process *os.Process) error {
	pid := process.Pid
	if err := process.Release(); err != nil {
		return err
	}
	for {
		var status syscall.WaitStatus
		got, err := syscall.Wait4(-1, &status, 0, nil)
		if err == syscall.EINTR {
			continue
		}
		if err != nil {
			return err
		}
		if got != pid {
			continue // an orphan, reaped
		}
		if status.Signaled() {
			return errors.NewExitErr(128 + int(status.Signal()))
		}
		return errors.NewExitErr(status.ExitStatus())
	}
}
