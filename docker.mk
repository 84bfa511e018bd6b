# The container path: the kit in the article's `docker run -it --privileged`
# box. Included from the Makefile, whose VENV and PY it uses; all the Docker
# work is in tools/docker-run, which `make step-NN` also hands itself to where
# namespaces are out of reach (demo/__main__.py: `tools/docker-run make step-04`).
DOCKER_RUN := tools/docker-run

# What `make docker-test` runs inside the container, in the kit's folder:
# the conformance suite on steps/, its table in the log.
DOCKER_TEST_CMD ?= $(PY) -m conformance --target steps

.PHONY: docker-image shell docker-test

## docker-image: build the nskit image (cached after the first time)
docker-image:
	@$(DOCKER_RUN) --build-only --show-build

## shell: an interactive shell in the privileged container, in the kit's folder
shell:
	@$(DOCKER_RUN)

## docker-test: build the image, then run the whole suite on steps/ inside it
docker-test:
	@$(DOCKER_RUN) --show-build -- $(DOCKER_TEST_CMD); status=$$?; \
	echo "docker-test: exit status $$status"; exit $$status
