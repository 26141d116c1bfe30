module avfleet.dev/tools/pause

go 1.26
