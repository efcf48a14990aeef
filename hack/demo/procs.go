package main

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// startBackground runs a program in its own session, so that it outlives make,
// logging to .demo/<name>.log and remembering its pid in .demo/<name>.pid.
func startBackground(p paths, name string, env []string, bin string, args ...string) error {
	logFile, err := os.Create(p.logFile(name))
	if err != nil {
		return err
	}
	defer logFile.Close()
	cmd := exec.Command(bin, args...)
	cmd.Env = append(os.Environ(), env...)
	cmd.Stdout, cmd.Stderr = logFile, logFile
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("starting %s: %w", name, err)
	}
	detail("%s: pid %d", name, cmd.Process.Pid)
	record := fmt.Sprintf("%d %s", cmd.Process.Pid, bin)
	if err := os.WriteFile(p.pidFile(name), []byte(record), 0o644); err != nil {
		return err
	}
	return cmd.Process.Release()
}

// stopAll ends every program a demo started (.demo/*.pid).
func stopAll(p paths) {
	pidFiles, _ := filepath.Glob(filepath.Join(p.workdir, "*.pid"))
	for _, f := range pidFiles {
		stopBackground(f)
	}
}

func stopBackground(pidFile string) {
	data, err := os.ReadFile(pidFile)
	if err != nil {
		return
	}
	defer os.Remove(pidFile)
	pidText, bin, _ := strings.Cut(strings.TrimSpace(string(data)), " ")
	pid, err := strconv.Atoi(pidText)
	if err != nil || !runs(pid, bin) {
		return
	}
	_ = syscall.Kill(pid, syscall.SIGTERM)
	for range 50 {
		if !runs(pid, bin) {
			return
		}
		time.Sleep(200 * time.Millisecond)
	}
	_ = syscall.Kill(pid, syscall.SIGKILL)
}

// runs guards against signalling an unrelated process that reused the pid.
func runs(pid int, bin string) bool {
	exe, err := os.Readlink(fmt.Sprintf("/proc/%d/exe", pid))
	return err == nil && strings.TrimSuffix(exe, " (deleted)") == bin
}
