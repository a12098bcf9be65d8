module banger.dev/agent

go 1.19
