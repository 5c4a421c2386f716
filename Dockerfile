# The scripts as a container image (used by the "app" profile of docker-compose.yml).
FROM python:3.11-slim

ENV PYTHONUNBUFFERED=1 PYTHONDONTWRITEBYTECODE=1 PIP_NO_CACHE_DIR=1
WORKDIR /app

COPY requirements.txt .
RUN pip install -r requirements.txt

COPY metrics_pipeline/ metrics_pipeline/
COPY productor_metrics_iabd06.py consumidor_metrics_iabd06.py informe_kpis_iabd06.py ./

RUN useradd --create-home --uid 10001 pipeline
USER 10001

CMD ["python", "consumidor_metrics_iabd06.py", "--help"]
