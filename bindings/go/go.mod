module github.com/wfengine/wfengine/bindings/go

go 1.19
