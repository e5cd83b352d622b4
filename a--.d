-: worker/compress/spec.h common/err.h worker/compress/constraint.h \
 worker/compress/proj.h
common/err.h:
worker/compress/constraint.h:
worker/compress/proj.h:
