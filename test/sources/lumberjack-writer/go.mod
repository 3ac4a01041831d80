module kaudit.test/lumberjack-writer

go 1.21

require gopkg.in/natefinch/lumberjack.v2 v2.2.1
