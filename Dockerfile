# The relay daemon's image for docker-compose.yml (the local stack runs it straight from the venv).
# A normal (non-editable) install: the checked-in data travels inside the package (pipeline/resources.py),
# and the development stack (pipeline/devstack: local services, traffic generator, demo) is left out.
FROM python:3.11-slim AS build
WORKDIR /src
COPY . .
RUN pip wheel --no-cache-dir --no-deps -w /wheels .

FROM python:3.11-slim
COPY --from=build /wheels /wheels
RUN pip install --no-cache-dir /wheels/*.whl \
    && rm -rf /wheels "$(python -I -c 'import pipeline, pathlib; print(pathlib.Path(pipeline.__file__).parent)')/devstack"
USER nobody
CMD ["nibble", "relay"]
